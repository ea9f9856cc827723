// The ui slice: presentation choices that outlive a reload (the theme), kept in localStorage by the App.

import type { StateCreator } from 'zustand';
import type { AppState } from './index.ts';

export type ThemeChoice = 'system' | 'light' | 'dark';

export interface UiSlice {
  theme: ThemeChoice;
  setTheme(theme: ThemeChoice): void;
}

export const createUiSlice: StateCreator<AppState, [], [], UiSlice> = (set) => ({
  theme: 'system',
  setTheme: (theme) => set({ theme }),
});
