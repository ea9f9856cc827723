// Where WGSL source text comes from. The shaders live as real .wgsl files in shaders/;
// each host registers how to read them: Vite's raw imports in the browser, the file system in Node.

export type ShaderLoader = (name: string) => string;

let loader: ShaderLoader | null = null;
const cache = new Map<string, string>();

export function setShaderLoader(load: ShaderLoader): void {
  loader = load;
  cache.clear();
}

/** The source of shaders/<name>.wgsl. */
export function shaderSource(name: string): string {
  let source = cache.get(name);
  if (source === undefined) {
    if (!loader) throw new Error('no shader loader registered: call setShaderLoader() (done by gpu/node.ts or gpu/browser.ts)');
    source = loader(name);
    cache.set(name, source);
  }
  return source;
}
