// Theme choice as a radio group (arrow keys move between the options, as screen readers expect).

import { useApp } from '../store/index.ts';
import type { ThemeChoice } from '../store/ui.ts';
import { applyTheme } from './theme.ts';

const CHOICES: { value: ThemeChoice; label: string }[] = [
  { value: 'system', label: 'System' },
  { value: 'light', label: 'Light' },
  { value: 'dark', label: 'Dark' },
];

export function ThemeSwitch() {
  const theme = useApp((s) => s.theme);
  return (
    <fieldset className="theme-switch">
      <legend>Theme</legend>
      {CHOICES.map((choice) => (
        <label key={choice.value}>
          <input type="radio" name="theme" value={choice.value} checked={theme === choice.value} onChange={() => applyTheme(choice.value)} />
          <span>{choice.label}</span>
        </label>
      ))}
    </fieldset>
  );
}
