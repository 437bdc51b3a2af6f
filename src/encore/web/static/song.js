// The song page: click the spectrogram (or type seconds) to mark where the music starts,
// choose a length, a loop and the closeness, then ask for the piece and go to its page.

import { formatSeconds, requestMusic } from './api.js';

const root = document.getElementById('make-piece');
const duration = Number(root.dataset.duration);
const picture = root.querySelector('.song-spectrogram');
const mark = picture.querySelector('.start-mark');
const span = picture.querySelector('.piece-span');
const startInput = document.getElementById('piece-start');
const autoButton = document.getElementById('piece-auto');
const lengthSelect = document.getElementById('piece-seconds');
const loopBox = document.getElementById('piece-loop');
const slider = document.getElementById('piece-closeness');
const sliderValue = root.querySelector('output[for="piece-closeness"]');
const button = document.getElementById('piece-make');
const errorEl = root.querySelector('.form-error');

function start() {
  const text = startInput.value.trim();
  if (text === '') return null;
  const value = Number(text);
  return Number.isFinite(value) ? value : NaN;
}

function draw() {
  const s = start();
  const marked = s !== null && Number.isFinite(s) && s >= 0 && s < duration;
  mark.hidden = !marked;
  span.hidden = !marked;
  if (marked) {
    const left = (100 * s) / duration;
    mark.style.left = `${left}%`;
    span.style.left = `${left}%`;
    span.style.width = `${Math.min(100 - left, (100 * Number(lengthSelect.value)) / duration)}%`;
    button.textContent = `Make music from ${formatSeconds(s)}`;
  } else {
    button.textContent = 'Make music from the loudest part';
  }
  sliderValue.textContent = `${Math.round(Number(slider.value) * 100)} %`;
}

picture.addEventListener('click', (event) => {
  const box = picture.getBoundingClientRect();
  const x = Math.min(Math.max(event.clientX - box.left, 0), box.width);
  const seconds = Math.min((x / box.width) * duration, Math.max(duration - 0.1, 0));
  startInput.value = seconds.toFixed(1);
  draw();
});
startInput.addEventListener('input', draw);
lengthSelect.addEventListener('change', draw);
slider.addEventListener('input', draw);
autoButton.addEventListener('click', () => {
  startInput.value = '';
  draw();
});

button.addEventListener('click', async () => {
  errorEl.hidden = true;
  const s = start();
  const body = {
    song_ids: [Number(root.dataset.songId)],
    seconds: Number(lengthSelect.value),
    loop: loopBox.checked,
    closeness: Number(slider.value),
  };
  if (s !== null) {
    if (!Number.isFinite(s)) {
      errorEl.textContent = 'the start must be a number of seconds';
      errorEl.hidden = false;
      return;
    }
    body.start = s;
  }
  button.disabled = true;
  await requestMusic(root.dataset.api, body, button, errorEl);
});

draw();
