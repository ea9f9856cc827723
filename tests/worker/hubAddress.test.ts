// The app's "Hub address" setting (src/store/ui.ts): only http(s) URLs without credentials, query or fragment
// are accepted; a refused address changes nothing; an accepted one is kept in localStorage and read back by a
// fresh store, as after a reload.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { checkHubAddress } from '../../src/store/ui.ts';

class MemoryStorage {
  readonly items = new Map<string, string>();
  getItem(key: string) {
    return this.items.get(key) ?? null;
  }
  setItem(key: string, value: string) {
    this.items.set(key, String(value));
  }
  removeItem(key: string) {
    this.items.delete(key);
  }
}

async function freshStore() {
  vi.resetModules();
  return (await import('../../src/store/index.ts')).useApp;
}

afterEach(() => {
  vi.unstubAllGlobals();
});

describe('checkHubAddress', () => {
  it('accepts empty (the default hub) and http(s) URLs, without trailing slashes', () => {
    expect(checkHubAddress('')).toEqual({ ok: true, address: '' });
    expect(checkHubAddress('   ')).toEqual({ ok: true, address: '' });
    expect(checkHubAddress(' https://hf-mirror.com/ ')).toEqual({ ok: true, address: 'https://hf-mirror.com' });
    expect(checkHubAddress('http://127.0.0.1:8080/hub//')).toEqual({ ok: true, address: 'http://127.0.0.1:8080/hub' });
  });

  it('refuses what is not an http(s) hub address, saying why', () => {
    const reason = (text: string) => {
      const checked = checkHubAddress(text);
      expect(checked.ok, text).toBe(false);
      return checked.ok ? '' : checked.reason;
    };
    expect(reason('huggingface.co')).toMatch(/not a URL/);
    expect(reason('ftp://example.com')).toMatch(/scheme ftp: is not http: or https:/);
    expect(reason('javascript:alert(1)')).toMatch(/scheme javascript:/);
    expect(reason('file:///etc')).toMatch(/scheme file:/);
    expect(reason('https://user:secret@example.com')).toMatch(/user name or password/);
    expect(reason('https://example.com/?a=1')).toMatch(/query/);
    expect(reason('https://example.com/#x')).toMatch(/fragment/);
  });
});

describe('the hub address in the store', () => {
  it('is kept in localStorage and read back after a reload; a refused address changes nothing', async () => {
    const storage = new MemoryStorage();
    vi.stubGlobal('localStorage', storage);
    let useApp = await freshStore();
    expect(useApp.getState().hubAddress).toBe('');

    expect(useApp.getState().setHubAddress('http://localhost:8080/')).toBeNull();
    expect(useApp.getState().hubAddress).toBe('http://localhost:8080');
    expect([...storage.items.values()]).toEqual(['http://localhost:8080']);

    expect(useApp.getState().setHubAddress('ftp://nope')).toMatch(/scheme/);
    expect(useApp.getState().hubAddress).toBe('http://localhost:8080');

    useApp = await freshStore();
    expect(useApp.getState().hubAddress).toBe('http://localhost:8080');

    // Clearing it returns to the default hub and forgets the saved address.
    expect(useApp.getState().setHubAddress('')).toBeNull();
    expect(storage.items.size).toBe(0);
    expect((await freshStore()).getState().hubAddress).toBe('');
  });

  it('ignores a saved address that is not valid, and works without storage', async () => {
    const storage = new MemoryStorage();
    storage.setItem('tabtune-hub-address', 'gopher://old');
    vi.stubGlobal('localStorage', storage);
    expect((await freshStore()).getState().hubAddress).toBe('');

    vi.stubGlobal('localStorage', undefined);
    const useApp = await freshStore();
    expect(useApp.getState().hubAddress).toBe('');
    expect(useApp.getState().setHubAddress('https://hf-mirror.com')).toBeNull();
    expect(useApp.getState().hubAddress).toBe('https://hf-mirror.com');
  });
});
