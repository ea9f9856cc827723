// The colour theme: follow the system, or a choice the user made (kept in localStorage).

import { useApp } from '../store/index.ts';
import type { ThemeChoice } from '../store/ui.ts';

const KEY = 'tabtune-theme';

export function savedTheme(): ThemeChoice {
  try {
    const value = localStorage.getItem(KEY);
    return value === 'light' || value === 'dark' ? value : 'system';
  } catch {
    return 'system';
  }
}

export function applyTheme(theme: ThemeChoice): void {
  if (theme === 'system') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  useApp.getState().setTheme(theme);
  try {
    if (theme === 'system') localStorage.removeItem(KEY);
    else localStorage.setItem(KEY, theme);
  } catch {
    // storage may be off; the choice then lasts for this page
  }
}
