// The "your music" page: polls the delivery until its clip is ready (progress bar,
// message, place in the queue and the estimated time left; a queued request can be
// cancelled), then shows the player, the rating control and the download links. Listening
// heartbeats unlock the rating when the server says the minimum listen is reached.

import { api, csrfToken, formatSeconds } from './api.js';
import { Player } from './player.js';
import { StarRating } from './rating.js';

const root = document.querySelector('[data-delivery]');
const base = root.dataset.api;                 // /api/deliveries/<id>
const progressBox = root.querySelector('.job-progress');
const bar = progressBox.querySelector('progress');
const message = progressBox.querySelector('.job-message');
const failedBox = root.querySelector('.job-failed');
const playerBox = root.querySelector('.player');
const listenedEl = root.querySelector('.listened');
const queueInfo = progressBox.querySelector('.queue-info');
const cancelButton = progressBox.querySelector('button.cancel');
const cancelError = progressBox.querySelector('.cancel-error');
const cancelledBox = root.querySelector('.job-cancelled');
const POLL_MS = Number(root.dataset.pollMs || 1000);

let minListen = 0;
let rating;
let stopped = false;

function showListenState(state) {
  if (!state) return;
  // Once rated, the rating is done: no word of when it opens.
  const rated = Boolean(rating && rating.done);
  const need = !rated && !state.rating_allowed && minListen > 0
    ? ` · rating opens after ${minListen.toFixed(minListen % 1 ? 1 : 0)} s` : '';
  listenedEl.textContent = `Listened ${formatSeconds(state.listened_seconds)} (${Math.round(state.fraction * 100)} %)${need}`;
  if (state.rating_allowed && !rated) rating.setEnabled(true, 'How much do you like it?');
}

/** "Number 3 in the queue · about 0:40 left" (formatSeconds: whole seconds, floored). */
function waitText(view) {
  const parts = [];
  if (view.status === 'queued' && view.queue_position) {
    parts.push(view.queue_position === 1 ? 'Next in the queue' : `Number ${view.queue_position} in the queue`);
  } else if (view.status === 'running') {
    parts.push('Being made now');
  }
  const left = view.estimated_seconds_left;
  if (left !== null && left !== undefined) {
    parts.push(left >= 1 ? `about ${formatSeconds(left)} left` : 'ready any moment now');
  }
  return parts.join(' · ');
}

function showCancelled() {
  stopped = true;
  progressBox.hidden = true;
  cancelledBox.hidden = false;
}

cancelButton.addEventListener('click', async () => {
  cancelButton.disabled = true;
  cancelError.hidden = true;
  try {
    await api(`${base}/cancel`, { method: 'POST' });
    showCancelled();
  } catch (err) {
    cancelError.textContent = err.message;
    cancelError.hidden = false;
    cancelButton.hidden = true;
  }
});

function sendRanges(ranges, { final }) {
  if (final) {
    const body = JSON.stringify({ ranges, final: true });
    // The page is going away: keepalive lets the request outlive it (and, unlike
    // sendBeacon, carries the CSRF header).
    fetch(`${base}/listens`, {
      method: 'POST', keepalive: true, credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'X-CSRF-Token': csrfToken() }, body,
    }).catch(() => {});
    return;
  }
  api(`${base}/listens`, { method: 'POST', body: { ranges } })
    .then(showListenState)
    .catch((err) => { listenedEl.textContent = `listening not saved: ${err.message}`; });
}

function showPlayer(view) {
  progressBox.hidden = true;
  playerBox.hidden = false;
  minListen = view.min_listen_seconds || 0;
  rating = new StarRating(root.querySelector('.rating'), (stars) =>
    api(`${base}/rating`, { method: 'POST', body: { stars } }));
  const player = new Player(playerBox, {
    seconds: view.clip_seconds || 0,
    urgentAt: minListen,
    onRanges: sendRanges,
  });
  player.audio.src = `${base}/audio`;
  playerBox.querySelector('.spectrogram img').src = `${base}/spectrogram`;
  if (view.rating !== null && view.rating !== undefined) {
    rating.showDone(view.rating);
  } else {
    rating.setEnabled(Boolean(view.rating_allowed),
      view.rating_allowed ? 'How much do you like it?' : `Listen to at least ${minListen.toFixed(minListen % 1 ? 1 : 0)} s to rate.`);
  }
  showListenState({
    listened_seconds: view.listened_seconds || 0,
    fraction: view.listened_fraction || 0,
    rating_allowed: Boolean(view.rating_allowed),
  });
}

async function poll() {
  if (stopped) return;
  let view;
  try {
    view = await api(base);
  } catch (err) {
    message.textContent = `cannot read the status: ${err.message}`;
    setTimeout(poll, POLL_MS * 3);
    return;
  }
  if (stopped) return;
  if (view.status === 'ready') { showPlayer(view); return; }
  if (view.status === 'cancelled') { showCancelled(); return; }
  if (view.status === 'failed') {
    progressBox.hidden = true;
    failedBox.hidden = false;
    failedBox.querySelector('.job-error').textContent = view.message || 'the music could not be made';
    return;
  }
  bar.value = Math.round((view.progress || 0) * 100);
  message.textContent = view.message || (view.status === 'queued' ? 'waiting for a free worker…' : 'making your music…');
  queueInfo.textContent = waitText(view);
  cancelButton.hidden = !view.cancellable;
  setTimeout(poll, POLL_MS);
}

poll();
