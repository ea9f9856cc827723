// The ui slice: choices that outlive a reload: the theme (kept in localStorage by theme.ts) and the hub address
// (kept in localStorage here).

import type { StateCreator } from 'zustand';
import type { AppState } from './index.ts';

export type ThemeChoice = 'system' | 'light' | 'dark';

/** The hub address used when the setting is empty. */
export const DEFAULT_HUB_ADDRESS = 'https://huggingface.co';
const HUB_ADDRESS_KEY = 'tabtune-hub-address';

/**
 * Check a hub address as typed: '' (the default hub) or an http(s) URL without credentials, query or fragment.
 * Returns the address without surrounding spaces and trailing slashes, or the reason it is refused.
 */
export function checkHubAddress(text: string): { ok: true; address: string } | { ok: false; reason: string } {
  const trimmed = text.trim();
  if (trimmed === '') return { ok: true, address: '' };
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    return { ok: false, reason: 'not a URL (expected e.g. https://huggingface.co or http://localhost:8080)' };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return { ok: false, reason: `the scheme ${url.protocol} is not http: or https:` };
  if (url.username || url.password) return { ok: false, reason: 'a hub address must not hold a user name or password' };
  if (url.search || url.hash) return { ok: false, reason: 'a hub address must not have a query (?…) or fragment (#…)' };
  return { ok: true, address: trimmed.replace(/\/+$/, '') };
}

/** The saved hub address ('' when none is saved, storage is off, or what is saved is no longer valid). */
export function savedHubAddress(): string {
  try {
    const checked = checkHubAddress(globalThis.localStorage?.getItem(HUB_ADDRESS_KEY) ?? '');
    return checked.ok ? checked.address : '';
  } catch {
    return '';
  }
}

export interface UiSlice {
  theme: ThemeChoice;
  setTheme(theme: ThemeChoice): void;
  /** The hub address for hub downloads; '' for the default hub. Always a checked address. */
  hubAddress: string;
  /** Check, keep and save an address; returns the reason when it is refused (and nothing changes). */
  setHubAddress(text: string): string | null;
}

export const createUiSlice: StateCreator<AppState, [], [], UiSlice> = (set) => ({
  theme: 'system',
  setTheme: (theme) => set({ theme }),
  hubAddress: savedHubAddress(),
  setHubAddress: (text) => {
    const checked = checkHubAddress(text);
    if (!checked.ok) return checked.reason;
    set({ hubAddress: checked.address });
    try {
      if (checked.address === '') globalThis.localStorage?.removeItem(HUB_ADDRESS_KEY);
      else globalThis.localStorage?.setItem(HUB_ADDRESS_KEY, checked.address);
    } catch {
      // storage may be off; the address then lasts for this page
    }
    return null;
  },
});
