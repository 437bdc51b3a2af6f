// The "your music" page: polls the delivery until its clip is ready (progress bar and
// message), then shows the player and the rating control. Listening heartbeats unlock the
// rating when the server says the minimum listen is reached.

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
const POLL_MS = Number(root.dataset.pollMs || 1000);

let minListen = 0;
let rating;

function showListenState(state) {
  if (!state) return;
  const need = minListen > 0 ? ` · rating opens after ${minListen.toFixed(minListen % 1 ? 1 : 0)} s` : '';
  listenedEl.textContent = `Listened ${formatSeconds(state.listened_seconds)} (${Math.round(state.fraction * 100)} %)${state.rating_allowed ? '' : need}`;
  if (state.rating_allowed) rating.setEnabled(true, 'How much do you like it?');
}

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
  let view;
  try {
    view = await api(base);
  } catch (err) {
    message.textContent = `cannot read the status: ${err.message}`;
    setTimeout(poll, POLL_MS * 3);
    return;
  }
  if (view.status === 'ready') { showPlayer(view); return; }
  if (view.status === 'failed') {
    progressBox.hidden = true;
    failedBox.hidden = false;
    failedBox.querySelector('.job-error').textContent = view.message || 'the music could not be made';
    return;
  }
  bar.value = Math.round((view.progress || 0) * 100);
  message.textContent = view.message || (view.status === 'queued' ? 'waiting for a free worker…' : 'making your music…');
  setTimeout(poll, POLL_MS);
}

poll();
