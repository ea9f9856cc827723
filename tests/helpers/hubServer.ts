// A local server in the Hugging Face hub layout (node:http on 127.0.0.1, port 0), for tests that download:
//   file:    /{repo}/resolve/{revision}/{file}   (ranges with If-Range on an etag, for resumed downloads)
//   listing: /api/models/{repo}/revision/{revision}
// Repositories are added as files in memory or from a folder. The server can drop a connection mid-file, stall,
// answer a status, or send slowly (faults), gate or require a token for a repository, and it logs every request.

import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';

export type Fault =
  | { kind: 'drop'; after: number } // send `after` bytes of the body, then close the connection
  | { kind: 'stall'; after: number } // send `after` bytes, then nothing
  | { kind: 'status'; status: number }
  | { kind: 'slow'; chunk: number; delayMs: number };

export interface Logged {
  path: string;
  range: string | undefined;
  authorization: string | undefined;
  status: number;
}

export class TestHub {
  readonly repos = new Map<string, Map<string, Uint8Array>>(); // "org/name@revision" → files
  readonly gated = new Set<string>();
  readonly privateRepos = new Map<string, string>(); // repo → token
  readonly faults = new Map<string, Fault[]>(); // file path after /resolve/{rev}/ → faults for the next requests
  readonly log: Logged[] = [];
  private server: Server | null = null;
  url = '';

  add(repo: string, files: Record<string, string | Uint8Array>, revision = 'main'): void {
    const map = new Map<string, Uint8Array>();
    for (const [name, content] of Object.entries(files)) map.set(name, typeof content === 'string' ? new TextEncoder().encode(content) : content);
    this.repos.set(`${repo}@${revision}`, map);
  }

  /** Serve the plain files of `folder` (not its subfolders), except those `skip` names, as `repo` at `revision`. */
  addFolder(repo: string, folder: string, options: { revision?: string; skip?: (file: string) => boolean } = {}): void {
    const files: Record<string, Uint8Array> = {};
    for (const file of readdirSync(folder).sort()) {
      if (options.skip?.(file) || !statSync(join(folder, file)).isFile()) continue;
      files[file] = new Uint8Array(readFileSync(join(folder, file)));
    }
    this.add(repo, files, options.revision);
  }

  /** The paths requested so far, in order. */
  get paths(): string[] {
    return this.log.map((entry) => entry.path);
  }

  fault(file: string, ...faults: Fault[]): void {
    this.faults.set(file, faults);
  }

  requestsFor(file: string): Logged[] {
    return this.log.filter((r) => r.path.endsWith(`/${file}`));
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const entry: Logged = {
        path: url.pathname,
        range: req.headers.range,
        authorization: req.headers.authorization,
        status: 0,
      };
      this.log.push(entry);
      const send = (status: number, body: string | Uint8Array = '', headers: Record<string, string | number> = {}) => {
        entry.status = status;
        res.writeHead(status, { 'content-length': Buffer.byteLength(body), ...headers });
        res.end(body);
      };
      const segments = url.pathname.split('/').slice(1).map(decodeURIComponent);
      const isApi = segments[0] === 'api' && segments[1] === 'models' && segments[4] === 'revision';
      const [org, name] = isApi ? [segments[2], segments[3]] : [segments[0], segments[1]];
      const repo = `${org}/${name}`;
      if (this.gated.has(repo)) return send(403, 'Access to model is restricted. You must have access to it and be authenticated.');
      const token = this.privateRepos.get(repo);
      if (token !== undefined && req.headers.authorization !== `Bearer ${token}`) return send(401, 'Invalid credentials');
      if (isApi) {
        const files = this.repos.get(`${repo}@${segments.slice(5).join('/')}`);
        if (!files) return send(404, '{"error":"Repository not found"}');
        const siblings = [...files].map(([rfilename, bytes]) => ({ rfilename, size: bytes.byteLength }));
        return send(200, JSON.stringify({ id: repo, siblings }), { 'content-type': 'application/json' });
      }
      if (segments[2] !== 'resolve' || segments.length < 5) return send(404, 'not found');
      const file = segments.slice(4).join('/');
      const bytes = this.repos.get(`${repo}@${segments[3]}`)?.get(file);
      if (bytes === undefined) return send(404, 'Entry not found');
      const etag = `"${createHash('sha256').update(bytes).digest('hex').slice(0, 16)}"`;
      const fault = this.faults.get(file)?.shift();
      if (fault?.kind === 'status') return send(fault.status, 'fault');

      let start = 0;
      let status = 200;
      const match = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      const ifRange = req.headers['if-range'];
      if (match && (ifRange === undefined || ifRange === etag)) {
        start = Number(match[1]);
        if (start >= bytes.byteLength) return send(416, '', { 'content-range': `bytes */${bytes.byteLength}` });
        status = 206;
      }
      const body = bytes.subarray(start);
      entry.status = status;
      res.writeHead(status, {
        'content-length': body.byteLength,
        etag,
        'accept-ranges': 'bytes',
        ...(status === 206 ? { 'content-range': `bytes ${start}-${bytes.byteLength - 1}/${bytes.byteLength}` } : {}),
      });
      if (fault?.kind === 'drop') {
        res.write(body.subarray(0, fault.after), () => setTimeout(() => res.socket?.destroy(), 20));
      } else if (fault?.kind === 'stall') {
        res.write(body.subarray(0, fault.after));
      } else if (fault?.kind === 'slow') {
        let at = 0;
        const next = () => {
          if (res.destroyed) return;
          if (at >= body.byteLength) return void res.end();
          res.write(body.subarray(at, at + fault.chunk));
          at += fault.chunk;
          setTimeout(next, fault.delayMs);
        };
        next();
      } else {
        res.end(body);
      }
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server!.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
