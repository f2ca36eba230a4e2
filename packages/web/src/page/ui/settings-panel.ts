/**
 * Draws the settings sections declared in shared/settings.ts and reports every change. Fields whose `visible`
 * says no are hidden; with a server backend the fields the server decides are disabled.
 */
import { SECTIONS, type DecodeSettings, type FieldSpec, type ModelCaps } from '../../shared/settings.js';
import { h } from './dom.js';

export class SettingsPanel {
  private values: DecodeSettings;
  private model: ModelCaps | null = null;
  private remote = false;
  private readonly rows = new Map<keyof DecodeSettings, { row: HTMLElement; input: HTMLInputElement | HTMLSelectElement; spec: FieldSpec }>();
  private readonly sections: { el: HTMLElement; visible?: (m: ModelCaps | null) => boolean }[] = [];

  constructor(root: HTMLElement, initial: DecodeSettings, private readonly onChange: (s: DecodeSettings) => void) {
    this.values = { ...initial };
    for (const sec of SECTIONS) {
      const fields = h('div', { class: 'fields' });
      for (const spec of sec.fields) {
        const id = `setting-${spec.key}`;
        let input: HTMLInputElement | HTMLSelectElement;
        if (spec.input.kind === 'select') {
          input = h('select', { id, name: spec.key }, ...spec.input.options.map((o) => h('option', { value: o.value }, o.label)));
        } else if (spec.input.kind === 'checkbox') {
          input = h('input', { id, name: spec.key, type: 'checkbox' });
        } else {
          input = h('input', { id, name: spec.key, type: 'number', min: spec.input.min, max: spec.input.max, step: spec.input.step, inputmode: spec.input.integer ? 'numeric' : 'decimal' });
        }
        input.addEventListener('change', () => this.read(spec, input));
        const row = h('label', { class: `field field-${spec.input.kind}`, for: id, title: spec.help }, h('span', { class: 'field-label' }, spec.label), input);
        this.rows.set(spec.key, { row, input, spec });
        fields.append(row);
      }
      const el = h('fieldset', { class: 'settings-section' }, h('legend', {}, sec.title), fields);
      this.sections.push({ el, visible: sec.visible });
      root.append(el);
    }
    this.write();
  }

  get settings(): DecodeSettings {
    return { ...this.values };
  }

  /** New values (a model's generation_config defaults, a query string). */
  set(values: Partial<DecodeSettings>): void {
    this.values = { ...this.values, ...values };
    this.write();
    this.onChange(this.settings);
  }

  setModel(model: ModelCaps | null): void {
    this.model = model;
    this.write();
  }

  /** With a server backend only the fields marked `remote` are sent; the others are disabled. */
  setRemote(remote: boolean): void {
    this.remote = remote;
    this.write();
  }

  private read(spec: FieldSpec, input: HTMLInputElement | HTMLSelectElement): void {
    let v: unknown;
    if (spec.input.kind === 'checkbox') v = (input as HTMLInputElement).checked;
    else if (spec.input.kind === 'select') v = input.value;
    else v = input.value.trim() === '' ? NaN : Number(input.value);
    this.values = { ...this.values, [spec.key]: v };
    this.write();
    this.onChange(this.settings);
  }

  private write(): void {
    for (const { row, input, spec } of this.rows.values()) {
      const v = this.values[spec.key];
      if (spec.input.kind === 'checkbox') (input as HTMLInputElement).checked = Boolean(v);
      else if (document.activeElement !== input) input.value = Number.isNaN(v) ? '' : String(v);
      row.hidden = spec.visible ? !spec.visible(this.values, this.model) : false;
      input.disabled = this.remote && !spec.remote;
      row.classList.toggle('disabled', input.disabled);
    }
    for (const s of this.sections) s.el.hidden = s.visible ? !s.visible(this.model) : false;
  }
}
