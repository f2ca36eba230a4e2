/** The conversation: user and assistant bubbles; an assistant bubble streams its committed text. */
import { h } from './dom.js';

export interface AssistantBubble {
  /** The committed text so far (it only grows); `streaming` shows the caret. */
  setText(text: string, streaming: boolean): void;
  setMeta(text: string): void;
  setError(message: string): void;
}

export class ChatView {
  constructor(private readonly list: HTMLElement, private readonly emptyHint: HTMLElement) {}

  clear(): void {
    this.list.replaceChildren(this.emptyHint);
    this.emptyHint.hidden = false;
  }

  addUser(text: string): void {
    this.emptyHint.hidden = true;
    this.list.append(h('div', { class: 'msg user' }, h('div', { class: 'bubble' }, text)));
    this.scroll();
  }

  addAssistant(label: string): AssistantBubble {
    this.emptyHint.hidden = true;
    const body = h('div', { class: 'text streaming' });
    const meta = h('div', { class: 'meta' }, label);
    const bubble = h('div', { class: 'bubble' }, body, meta);
    this.list.append(h('div', { class: 'msg assistant' }, bubble));
    this.scroll();
    return {
      setText: (text, streaming) => {
        body.textContent = text;
        body.classList.toggle('streaming', streaming);
        body.classList.toggle('empty', text === '');
        this.scroll();
      },
      setMeta: (text) => {
        meta.textContent = text;
      },
      setError: (message) => {
        body.classList.remove('streaming');
        bubble.append(h('div', { class: 'error-text', role: 'alert' }, message));
        this.scroll();
      },
    };
  }

  private scroll(): void {
    this.list.scrollTop = this.list.scrollHeight;
  }
}
