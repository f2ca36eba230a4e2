/**
 * The page: wires the model panel, the settings, the chat and the canvas to a backend (the engine worker, or a
 * `fast-dllm serve` process). The main thread only draws; every forward pass runs in the engine worker.
 *
 * Query parameters: `model=URL` (load this model folder instead of the bundled one), `threads=N`,
 * `autoload=0` (load nothing until asked), `server=URL` (start on the server backend at this URL).
 */
import type { ChatMessage, LoadedModelInfo, ModelSource } from '../shared/protocol.js';
import { DEFAULT_SETTINGS, describeSettings, recipeSettings, settingsProblems, type DecodeSettings, type ModelCaps } from '../shared/settings.js';
import { LocalBackend, RemoteBackend, type Backend, type LoadProgress } from './backends.js';
import { listModels } from './openai-client.js';
import { CanvasView } from './ui/canvas-view.js';
import { ChatView } from './ui/chat-view.js';
import { byId, formatCount } from './ui/dom.js';
import { SettingsPanel } from './ui/settings-panel.js';

/** Where `fast-dllm web` serves the bundled model, relative to the page. */
const DEFAULT_MODEL_URL = 'models/default/';

const formatBytes = (n: number): string =>
  n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(1)} MiB` : `${(n / 1024).toFixed(1)} KiB`;

export function startApp(): void {
  const query = new URLSearchParams(location.search);
  const isolated = globalThis.crossOriginIsolated === true && typeof SharedArrayBuffer !== 'undefined';
  const body = document.body;

  // --- isolation and threads ---
  const cores = Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 16));
  const threadsSelect = byId<HTMLSelectElement>('threads');
  for (let t = 1; t <= Math.max(cores, 2); t++) {
    const o = new Option(t === 1 ? '1 (no workers)' : String(t), String(t));
    o.disabled = t > 1 && !isolated;
    threadsSelect.append(o);
  }
  const asked = Number(query.get('threads'));
  let threads = isolated ? (Number.isInteger(asked) && asked >= 1 ? Math.min(asked, Math.max(cores, 2)) : Math.min(cores, 4)) : 1;
  threadsSelect.value = String(threads);
  const pill = byId('isolation-pill');
  const banner = byId('isolation-banner');
  if (isolated) {
    pill.textContent = 'cross-origin isolated · threads on';
    pill.className = 'pill ok';
  } else {
    pill.textContent = 'not isolated · 1 thread';
    pill.className = 'pill warn';
    banner.hidden = false;
    banner.textContent = 'This page is not cross-origin isolated (it was served without the headers COOP: same-origin and COEP: require-corp), ' +
      'so the browser gives it no shared memory and the engine runs on one thread. Serve it with `fast-dllm web` to use more threads.' +
      (asked > 1 ? ` (${asked} threads were asked for.)` : '');
  }
  body.dataset.isolated = String(isolated);

  // --- views ---
  const canvas = new CanvasView(byId('canvas'), byId('stats'), byId<HTMLInputElement>('step-slider'), byId('step-label'), byId<HTMLButtonElement>('replay'));
  const chat = new ChatView(byId('messages'), byId('chat-empty'));
  const problemsEl = byId('settings-problems');
  let model: LoadedModelInfo | null = null;
  let caps: ModelCaps | null = null;
  /** The served model's family, once the server said (null: not asked yet, or not a fast-dllm server). */
  let remoteCaps: ModelCaps | null = null;
  const currentCaps = () => (backend.kind === 'local' ? caps : remoteCaps);
  const showProblems = (s: DecodeSettings): string[] => {
    const p = settingsProblems(s, currentCaps());
    problemsEl.hidden = p.length === 0;
    problemsEl.textContent = p.join(' ');
    updateSend();
    return p;
  };
  const settings = new SettingsPanel(byId('settings'), DEFAULT_SETTINGS, (s) => showProblems(s));

  // --- backends ---
  const local = new LocalBackend(new URL('engine-worker.js', location.href).href);
  let remote: RemoteBackend | null = null;
  let backend: Backend = local;
  const serverUrl = byId<HTMLInputElement>('server-url');
  const serverStatus = byId('server-status');

  // --- model loading ---
  const progressBox = document.querySelector<HTMLElement>('#load-status .progress')!;
  const progressBar = byId('progress-bar');
  const loadText = byId('load-text');
  const modelPill = byId('model-pill');
  // The header names what answers: the model in the page, or the server when connected to one (it said "bundled
  // model" while a server answered). The page's own model state is kept to show again on switching back.
  let localPill = { text: 'no model', cls: 'pill warn' };
  let remotePill: { text: string; cls: string } | null = null;
  const showPill = () => {
    const p = remotePill ?? localPill;
    modelPill.textContent = p.text;
    modelPill.className = p.cls;
  };
  const setLocalPill = (text: string, cls: string) => {
    localPill = { text, cls };
    showPill();
  };
  const chatHint = byId('chat-hint');
  let localHint = chatHint.textContent ?? '';
  let source: ModelSource | null = null;
  let loading = 0; // generation of the load in flight; a newer load makes an older one's result moot

  const setStatus = (text: string, kind: '' | 'error' | 'ok' = '') => {
    loadText.textContent = text;
    loadText.className = `status-text ${kind}`;
  };
  const onProgress = (p: LoadProgress) => {
    const frac = p.total > 0 ? p.done / p.total : 0;
    progressBox.hidden = false;
    progressBar.style.width = `${(100 * frac).toFixed(1)}%`;
    const what = p.phase[0].toUpperCase() + p.phase.slice(1);
    setStatus(p.unit === 'bytes'
      ? `${what}${p.file ? ` ${p.file}` : ''}: ${formatBytes(p.done)} of ${formatBytes(p.total)} (${Math.round(100 * frac)}%)`
      : `${what}: ${p.done} of ${p.total} files`);
  };

  async function load(asked: ModelSource): Promise<void> {
    const mine = ++loading;
    const reload = asked === source; // threads or weight storage changed: keep the user's lengths
    let src = asked;
    if (src.kind === 'url') {
      try {
        src = { ...src, url: new URL(src.url, location.href).href }; // the worker sees absolute URLs only
      } catch {
        setStatus(`Could not load the model: '${src.url}' is not a URL`, 'error');
        return;
      }
    }
    source = src;
    model = null;
    caps = null;
    if (backend.kind === 'local') settings.setModel(null);
    body.dataset.model = 'loading';
    setLocalPill('loading…', 'pill');
    progressBar.style.width = '0';
    setStatus('Starting the engine…');
    updateSend();
    try {
      const info = await local.load(src, {
        threads, weightDType: byId<HTMLSelectElement>('dtype').value as 'f32' | 'bf16',
        wasmUrl: new URL('wasm/', location.href).href, kernelWorkerUrl: new URL('kernel-worker.js', location.href).href,
      }, (p) => mine === loading && onProgress(p));
      if (mine !== loading) return;
      model = info;
      caps = { architecture: info.architecture, maxPositions: info.maxPositions, ...(info.blockSize !== undefined ? { blockSize: info.blockSize } : {}) };
      // A new model starts at its family's recipe, with its generation_config's lengths (the panel shows the
      // server's model while the page talks to one).
      if (backend.kind === 'local') {
        settings.setModel(caps);
        if (!reload) settings.set({ ...recipeSettings(caps), ...info.defaults });
      }
      progressBox.hidden = true;
      setStatus(`Ready: ${info.label} · ${info.architecture} · ${formatCount(info.parameters)} parameters · ${formatBytes(info.fileBytes)} of weights · ` +
        `${info.weightDType} · ${info.threads} thread${info.threads > 1 ? 's' : ''} · loaded in ${(info.loadMs / 1000).toFixed(1)} s`, 'ok');
      setLocalPill(`${info.label.length > 40 ? `…${info.label.slice(-38)}` : info.label} · ${formatCount(info.parameters)} params`, 'pill ok');
      body.dataset.model = 'ready';
      // A model trained on one task says which (its fast_dllm.json): the hint names it, with the loaded model's
      // own parameter count, and the example questions (the bundled models' task) show; another model gets a plain hint.
      byId('examples').hidden = info.knows === undefined;
      localHint = info.knows !== undefined
        ? `This model is tiny (${formatCount(info.parameters)} parameters) and knows one thing: ${info.knows}.`
        : `${info.label} is loaded (${formatCount(info.parameters)} parameters). Ask it something.`;
      if (backend.kind === 'local') chatHint.textContent = localHint;
    } catch (e) {
      if (mine !== loading) return;
      progressBox.hidden = true;
      setStatus(`Could not load the model: ${(e as Error).message}`, 'error');
      setLocalPill('no model', 'pill warn');
      body.dataset.model = 'error';
    }
    updateSend();
  }

  const defaultSource = (): ModelSource => ({ kind: 'url', url: query.get('model') ?? DEFAULT_MODEL_URL, label: query.get('model') ? undefined : 'bundled model' });
  byId('load-default').addEventListener('click', () => void load({ kind: 'url', url: DEFAULT_MODEL_URL, label: 'bundled model' }));
  byId<HTMLFormElement>('url-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const url = byId<HTMLInputElement>('model-url').value.trim();
    if (url) void load({ kind: 'url', url });
  });
  const folder = byId<HTMLInputElement>('folder-input');
  folder.addEventListener('change', () => {
    const files = [...(folder.files ?? [])].map((file) => ({ path: file.webkitRelativePath || file.name, file }));
    folder.value = '';
    if (files.length) void load({ kind: 'files', files, label: files[0].path.split('/')[0] });
  });
  // Threads and weight storage are fixed when the engine is built: a change reloads the model.
  threadsSelect.addEventListener('change', () => {
    threads = Number(threadsSelect.value);
    if (source) void load(source);
  });
  byId('dtype').addEventListener('change', () => source && void load(source));

  // --- backend choice ---
  const localPanel = byId('local-panel');
  const remotePanel = byId('remote-panel');
  const chooseBackend = (kind: 'local' | 'remote') => {
    localPanel.hidden = kind !== 'local';
    remotePanel.hidden = kind !== 'remote';
    remote = kind === 'remote' ? new RemoteBackend(serverUrl.value.trim()) : null;
    backend = remote ?? local;
    remotePill = remote ? { text: `server ${remote.server}`, cls: 'pill' } : null;
    showPill();
    chatHint.textContent = remote ? `Messages go to the server at ${remote.server}; the model runs there.` : localHint;
    remoteCaps = null;
    settings.setRemote(kind === 'remote');
    settings.setModel(currentCaps());
    body.dataset.backend = kind;
    showProblems(settings.settings);
    // The served model's family decides which settings apply and what they start at (its recipe).
    const asked = remote;
    asked?.model().then((m) => {
      if (backend !== asked || !m?.caps) return;
      remoteCaps = m.caps;
      settings.setModel(remoteCaps);
      settings.set(recipeSettings(remoteCaps));
    }, () => undefined); // the connect button reports an unreachable server
  };
  byId<HTMLInputElement>('backend-local').addEventListener('change', () => chooseBackend('local'));
  byId<HTMLInputElement>('backend-remote').addEventListener('change', () => chooseBackend('remote'));
  serverUrl.addEventListener('change', () => backend.kind === 'remote' && chooseBackend('remote'));
  byId<HTMLFormElement>('server-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    chooseBackend('remote');
    serverStatus.className = 'status-text';
    serverStatus.textContent = `Connecting to ${serverUrl.value}…`;
    try {
      const models = await listModels(serverUrl.value);
      serverStatus.className = 'status-text ok';
      serverStatus.textContent = `Connected${models.length ? `: ${models.join(', ')}` : ''}. The decoding settings are sent with each message (the server checks them).`;
      if (remote) {
        remotePill = { text: `${models.length ? `${models.join(', ')} · ` : ''}server ${remote.server}`, cls: 'pill ok' };
        showPill();
      }
    } catch (err) {
      serverStatus.className = 'status-text error';
      serverStatus.textContent = (err as Error).message;
    }
  });

  // --- chat ---
  const promptEl = byId<HTMLTextAreaElement>('prompt');
  const sendBtn = byId<HTMLButtonElement>('send');
  const stopBtn = byId<HTMLButtonElement>('stop');
  const history: ChatMessage[] = [];
  let turn: AbortController | null = null;

  function updateSend(): void {
    const ready = backend.kind === 'remote' || model !== null;
    const problems = settingsProblems(settings.settings, currentCaps());
    sendBtn.disabled = turn !== null || !ready || problems.length > 0;
    sendBtn.title = !ready ? 'load a model first' : problems.join(' ');
  }

  async function send(text: string): Promise<void> {
    if (turn || !text.trim()) return;
    const s = settings.settings;
    if (showProblems(s).length) return;
    const controller = new AbortController();
    turn = controller;
    body.dataset.busy = 'true';
    stopBtn.hidden = false;
    updateSend();
    history.push({ role: 'user', content: text.trim() });
    chat.addUser(text.trim());
    const where = backend.kind === 'local' ? `${model?.label ?? 'model'} · ${threads} thread${threads > 1 ? 's' : ''}` : (backend as RemoteBackend).server;
    const bubble = chat.addAssistant(where);
    const note = backend.kind === 'local' ? `${describeSettings(s, caps)} · ${threads} thread${threads > 1 ? 's' : ''}` : `server ${where}`;
    canvas.reset(s.genLength, backend.kind === 'local' ? caps?.blockSize ?? s.blockLength : undefined, note);
    // (a block-diffusion model's first group is set by the worker's first frame, once the prompt length is known)
    try {
      const r = await backend.chat(s.multiTurn ? history.slice() : history.slice(-1), s, {
        onFrame: (f, info) => canvas.push(f, info),
        onText: (t) => bubble.setText(t, true),
      }, controller.signal);
      if (r.frame && r.stats?.stoppedEarly) canvas.push(r.frame, r.info);
      canvas.finish(r.stats);
      bubble.setText(r.text, false);
      const st = r.stats;
      bubble.setMeta(st
        ? `${where} · NFE ${st.nfe} · ${st.tokensPerForward.toFixed(2)} tokens/forward · ${st.tokensPerSecond.toFixed(1)} tokens/s · ${(st.wallTimeMs / 1000).toFixed(2)} s`
        : where);
      history.push({ role: 'assistant', content: r.text });
    } catch (e) {
      history.pop(); // the unanswered turn leaves the conversation
      canvas.finish(null);
      const err = e as Error;
      bubble.setError(err.name === 'AbortError' ? 'Stopped.' : `Error: ${err.message}`);
    } finally {
      turn = null;
      body.dataset.busy = 'false';
      stopBtn.hidden = true;
      updateSend();
    }
  }

  byId<HTMLFormElement>('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = promptEl.value;
    if (sendBtn.disabled || !text.trim()) return;
    promptEl.value = '';
    void send(text);
  });
  promptEl.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) {
      e.preventDefault();
      byId<HTMLFormElement>('composer').requestSubmit();
    }
  });
  stopBtn.addEventListener('click', () => turn?.abort());
  byId('new-chat').addEventListener('click', () => {
    turn?.abort();
    history.length = 0;
    chat.clear();
  });
  for (const chip of document.querySelectorAll<HTMLButtonElement>('.chip[data-prompt]')) {
    chip.addEventListener('click', () => {
      if (sendBtn.disabled) {
        promptEl.value = chip.dataset.prompt!;
        return;
      }
      void send(chip.dataset.prompt!);
    });
  }

  // --- start ---
  const server = query.get('server');
  if (server) {
    serverUrl.value = server;
    byId<HTMLInputElement>('backend-remote').checked = true;
    chooseBackend('remote');
  } else {
    chooseBackend('local');
  }
  if (query.get('autoload') !== '0') void load(defaultSource());
  else setStatus('Pick a model: the bundled one, a folder, or a URL.');
}
