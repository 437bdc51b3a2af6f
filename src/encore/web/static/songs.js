// Song library: pick one song (a variation, with "how close to my song") or several
// (a blend: how close, and each song's share), the length and a loop, then ask for music
// and go to its page.

import { api, requestMusic } from './api.js';

const root = document.querySelector('[data-make-music]');
const boxes = [...root.querySelectorAll('input[name="song"]')];
const closeness = root.querySelector('.closeness');
const slider = closeness.querySelector('input[type="range"]');
const sliderValue = closeness.querySelector('output');
const button = root.querySelector('button.make');
const lengthBox = root.querySelector('.piece-length');
const lengthSelect = document.getElementById('make-seconds');
const loopBox = document.getElementById('make-loop');
const errorEl = root.querySelector('.form-error');

function selected() {
  return boxes.filter((b) => b.checked).map((b) => Number(b.value));
}

function weightOf(box) {
  return box.closest('li').querySelector('input[name="weight"]');
}

// Each blended song's share in per cent of all the chosen weights.
function showShares() {
  const chosen = boxes.filter((b) => b.checked);
  const total = chosen.reduce((sum, b) => sum + Number(weightOf(b).value), 0);
  for (const b of chosen) {
    const out = b.closest('li').querySelector('.blend-weight output');
    out.textContent = total > 0 ? `${Math.round((100 * Number(weightOf(b).value)) / total)} %` : '–';
  }
}

function update() {
  const n = selected().length;
  button.disabled = n === 0;
  closeness.hidden = n === 0;
  lengthBox.hidden = n === 0;
  closeness.querySelector('.songs-word').textContent = n > 1 ? 'songs' : 'song';
  for (const b of boxes) b.closest('li').querySelector('.blend-weight').hidden = !(n > 1 && b.checked);
  showShares();
  button.textContent = n === 0 ? 'Pick a song' : n === 1 ? 'Make a variation' : `Blend ${n} songs`;
  for (const b of boxes) b.closest('li').classList.toggle('selected', b.checked);
}

function showSlider() {
  sliderValue.textContent = `${Math.round(Number(slider.value) * 100)} %`;
}

boxes.forEach((b) => b.addEventListener('change', update));
boxes.forEach((b) => weightOf(b).addEventListener('input', showShares));
slider.addEventListener('input', showSlider);

button.addEventListener('click', async () => {
  const ids = selected();
  if (!ids.length) return;
  button.disabled = true;
  errorEl.hidden = true;
  const body = {
    song_ids: ids, closeness: Number(slider.value),
    seconds: Number(lengthSelect.value), loop: loopBox.checked,
  };
  if (ids.length > 1) {
    body.weights = boxes.filter((b) => b.checked).map((b) => Number(weightOf(b).value));
  }
  await requestMusic(root.dataset.api, body, button, errorEl);
});

// Songs are analysed by a worker after upload: poll until none is pending.
async function refreshPending() {
  const pending = root.querySelectorAll('li[data-status="pending"]');
  if (!pending.length) return;
  try {
    const { songs } = await api('/api/songs');
    for (const song of songs) {
      const li = root.querySelector(`li[data-song-id="${song.id}"]`);
      if (!li || li.dataset.status === song.status) continue;
      li.dataset.status = song.status;
      const badge = li.querySelector('.song-badge');
      badge.textContent = '';
      if (song.status === 'ready') {
        li.querySelector('input[name="song"]').disabled = false;
      } else if (song.status === 'failed') {
        const b = document.createElement('span');
        b.className = 'badge bad';
        b.textContent = 'unusable';
        badge.append(b);
      }
    }
  } catch (_) { /* try again on the next tick */ }
  setTimeout(refreshPending, 1500);
}

update();
showSlider();
refreshPending();
