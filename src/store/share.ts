// The share slice: the link built from the current state (for the `share-url` field) and whether it is to be a
// demo link, and a link this page was opened with: its decoded configuration waiting for the user's confirmation, or why it was refused.

import type { StateCreator } from 'zustand';
import type { ShareConfig } from '../share/shareLink.ts';
import type { AppState } from './index.ts';

export type IncomingShare =
  | { state: 'offer'; config: ShareConfig }
  /** Confirmed: the dataset is being fetched or the model loaded. */
  | { state: 'applying'; config: ShareConfig }
  | { state: 'refused'; message: string };

export interface ShareState {
  /** The last link built with the share button ('' before). */
  url: string;
  /** Why the last link could not be built. */
  problem: string | null;
  /** Make demo links: opening one offers a single button that loads, sets up and starts training. */
  demoMode: boolean;
  incoming: IncomingShare | null;
}

export interface ShareSlice {
  share: ShareState;
  patchShare(patch: Partial<ShareState>): void;
}

export const createShareSlice: StateCreator<AppState, [], [], ShareSlice> = (set) => ({
  share: { url: '', problem: null, demoMode: false, incoming: null },
  patchShare: (patch) => set((state) => ({ share: { ...state.share, ...patch } })),
});
