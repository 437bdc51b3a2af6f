// Versions page: follow running fine-tunes (progress and message); reload when one ends.
import { api } from './api.js';

const rows = [...document.querySelectorAll('tr[data-run-id]')]
  .filter((tr) => tr.dataset.status === 'queued' || tr.dataset.status === 'running');

async function poll() {
  for (const tr of rows) {
    let run;
    try {
      run = await api(`/api/operator/training-runs/${tr.dataset.runId}`);
    } catch (_) {
      continue;
    }
    if (run.status !== 'queued' && run.status !== 'running') {
      window.location.reload();
      return;
    }
    const bar = tr.querySelector('progress');
    if (bar) bar.value = Math.round(run.progress * 100);
    const badge = tr.querySelector('.badge');
    if (badge) badge.textContent = run.status;
    const message = tr.querySelector('.run-message');
    if (message) message.textContent = run.message || '';
  }
  setTimeout(poll, 2000);
}

if (rows.length) poll();
