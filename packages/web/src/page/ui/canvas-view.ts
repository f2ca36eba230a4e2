/**
 * The canvas view: one cell per generated position, grouped by block. A masked cell is grey; a cell committed by
 * the latest step is highlighted; earlier commits are plain; EOS / end-of-turn cells are faint. Every frame is
 * kept, so a finished generation can be stepped through again with the slider (a small model decodes faster
 * than the eye follows). The stats line under the grid says where the generation stands.
 */
import type { CanvasFrame, GenerationSummary, LocalFrameInfo } from '../../shared/protocol.js';
import { h } from './dom.js';

interface Kept {
  frame: CanvasFrame;
  info?: LocalFrameInfo;
}

/** Special tokens as a server sends them (`<|endoftext|>`, `<|im_end|>`), when no LocalFrameInfo says which. */
const SPECIAL = /^<\|[^|]*\|>$/;
const END_OF_TURN = /eot|im_end|end_of_turn/;

/** How a cell shows a token: EOS padding as a dot, end of turn as ⏎, whitespace made visible, empty text marked. */
export function cellText(t: string, kind: 'eos' | 'eot' | null): string {
  if (kind === 'eos') return '·';
  if (kind === 'eot') return '⏎';
  if (t === '') return '∅';
  if (/^\s+$/.test(t)) return t.replace(/\n/g, '↵').replace(/\t/g, '⇥').replace(/ /g, '␣');
  return t.replace(/\n/g, '↵');
}

export class CanvasView {
  private cells: HTMLSpanElement[] = [];
  private blocks: HTMLDivElement[] = [];
  private history: Kept[] = [];
  private shown = -1;
  private final: GenerationSummary | null = null;
  private replayTimer: ReturnType<typeof setInterval> | null = null;
  private note = '';

  constructor(
    private readonly grid: HTMLElement,
    private readonly stats: HTMLElement,
    private readonly slider: HTMLInputElement,
    private readonly stepLabel: HTMLElement,
    private readonly replayButton: HTMLButtonElement,
  ) {
    slider.addEventListener('input', () => {
      this.stopReplay();
      this.draw(Number(slider.value));
    });
    replayButton.addEventListener('click', () => this.replay());
    this.empty('Send a message: its generated positions appear here as masked cells, then unmask step by step.');
  }

  private empty(text: string): void {
    this.grid.replaceChildren(h('p', { class: 'canvas-empty' }, text));
    this.cells = [];
    this.blocks = [];
    this.history = [];
    this.shown = -1;
    this.final = null;
    this.slider.disabled = true;
    this.replayButton.disabled = true;
    this.slider.max = '0';
    this.slider.value = '0';
    this.stepLabel.textContent = '';
    this.stats.textContent = '';
  }

  /** The first group's length of the current grid (see reset). */
  private firstGroup: number | undefined;

  /**
   * A new generation of `genLength` positions; `blockLength` groups them (absent: one group, as from a server).
   * `firstGroup`: positions in the first group when blocks are aligned to absolute positions and the prompt ends
   * inside one (block-diffusion models); the first group then holds the rest of that block.
   */
  reset(genLength: number, blockLength: number | undefined, note: string, firstGroup?: number): void {
    this.firstGroup = firstGroup;
    this.stopReplay();
    this.empty('');
    this.note = note;
    this.grid.replaceChildren();
    const bl = blockLength && blockLength > 0 ? blockLength : genLength;
    const bounds: number[] = [0]; // group starts, then genLength
    for (let g = firstGroup && firstGroup > 0 ? firstGroup : bl; g < genLength; g += bl) bounds.push(g);
    bounds.push(genLength);
    for (let b = 0; b + 1 < bounds.length; b++) {
      const cells = h('div', { class: 'cells' });
      for (let g = bounds[b]; g < bounds[b + 1]; g++) {
        const c = h('span', { class: 'cell masked', 'data-pos': g, title: `position ${g}: masked` });
        this.cells.push(c);
        cells.append(c);
      }
      const group = h('div', { class: 'block', 'data-block': b },
        h('div', { class: 'block-label' }, blockLength ? `block ${b}` : `${genLength} positions`), cells);
      this.blocks.push(group);
      this.grid.append(group);
    }
  }

  /** A frame of the running generation: drawn at once and kept for the slider. */
  push(frame: CanvasFrame, info?: LocalFrameInfo): void {
    if (this.cells.length !== frame.tokens.length || info?.firstGroup !== this.firstGroup) {
      this.reset(frame.tokens.length, info?.blockLength, this.note, info?.firstGroup);
    }
    this.history.push({ frame, info });
    this.slider.max = String(this.history.length - 1);
    this.slider.value = this.slider.max;
    this.draw(this.history.length - 1);
  }

  /** The generation ended: the final statistics, and the slider to step through it. */
  finish(stats: GenerationSummary | null): void {
    this.final = stats;
    this.slider.disabled = this.history.length < 2;
    this.replayButton.disabled = this.history.length < 2;
    this.draw(this.history.length - 1);
  }

  private draw(i: number): void {
    const kept = this.history[i];
    if (!kept) return;
    this.shown = i;
    const { frame, info } = kept;
    const fresh = new Set(frame.committed);
    const stops = new Set(info?.stops ?? []);
    const ends = new Set(info?.ends ?? []);
    frame.tokens.forEach((t, g) => {
      const c = this.cells[g];
      let kind: 'eos' | 'eot' | null = null;
      if (info) kind = stops.has(g) ? 'eos' : ends.has(g) ? 'eot' : null;
      else if (t !== null && SPECIAL.test(t)) kind = END_OF_TURN.test(t) ? 'eot' : 'eos';
      const cls = t === null ? 'cell masked' : `cell ${fresh.has(g) ? 'fresh' : 'done'}${kind ? ' stop' : ''}`;
      if (c.className !== cls) c.className = cls;
      const text = t === null ? '' : cellText(t, kind);
      if (c.textContent !== text) {
        c.textContent = text;
        c.title = t === null ? `position ${g}: masked` : `position ${g}: ${JSON.stringify(t)}`;
      }
    });
    this.blocks.forEach((b, k) => b.classList.toggle('active', info !== undefined && k === info.block && i === this.history.length - 1 && !this.final));
    this.stepLabel.textContent = `step ${frame.step} of ${this.history[this.history.length - 1].frame.step}`;
    this.stats.textContent = this.statsLine(kept, i === this.history.length - 1);
  }

  private statsLine({ frame, info }: Kept, latest: boolean): string {
    const unmasked = frame.tokens.reduce((a, t) => a + (t === null ? 0 : 1), 0);
    const parts = [`step ${frame.step}`, `NFE ${frame.nfe}`, `${unmasked} / ${frame.tokens.length} unmasked`];
    if (info) parts.push(`prompt ${info.promptLength} tokens`);
    if (frame.nfe > 0) parts.push(`${(unmasked / frame.nfe).toFixed(2)} tokens/forward`);
    const s = latest ? this.final : null;
    if (s) {
      parts.push(`${s.tokensPerSecond.toFixed(1)} tokens/s`, `${(s.wallTimeMs / 1000).toFixed(2)} s`);
      if (s.stoppedEarly) parts.push('stopped early');
    } else if (info && frame.nfe > 0 && info.elapsedMs > 0) {
      parts.push(`${((info.contentTokens * 1000) / info.elapsedMs).toFixed(1)} tokens/s`, `${(info.elapsedMs / 1000).toFixed(2)} s`);
    }
    if (this.note) parts.push(this.note);
    return parts.join(' · ');
  }

  /** Steps through the kept frames, 350 ms each. */
  private replay(): void {
    this.stopReplay();
    let i = 0;
    this.draw(0);
    this.slider.value = '0';
    this.replayTimer = setInterval(() => {
      i++;
      if (i >= this.history.length) return this.stopReplay();
      this.slider.value = String(i);
      this.draw(i);
    }, 350);
  }

  private stopReplay(): void {
    if (this.replayTimer !== null) clearInterval(this.replayTimer);
    this.replayTimer = null;
  }

  /** For tests and the stats: the index of the frame on screen. */
  get frameShown(): number {
    return this.shown;
  }
}
