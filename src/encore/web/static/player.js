// The clip player: the spectrogram image with a moving playhead over an <audio> element;
// play/pause button, click or arrow keys on the spectrogram to seek. Listening is reported
// as played ranges (listening.js) through `onRanges`.

import { formatSeconds } from './api.js';
import { trackListening } from './listening.js';

export class Player {
  /**
   * @param {HTMLElement} root  holds audio, .spectrogram (img + .playhead), button.play, .time
   * @param {{seconds:number, onRanges:Function, urgentAt:number}} options
   */
  constructor(root, { seconds, onRanges, urgentAt }) {
    this.root = root;
    this.audio = root.querySelector('audio');
    this.view = root.querySelector('.spectrogram');
    this.playhead = root.querySelector('.playhead');
    this.button = root.querySelector('button.play');
    this.time = root.querySelector('.time');
    this.fallbackSeconds = seconds;
    this.button.addEventListener('click', () => this.toggle());
    this.view.addEventListener('click', (e) => this.seekToPointer(e));
    this.view.addEventListener('keydown', (e) => this.onKey(e));
    for (const type of ['timeupdate', 'loadedmetadata', 'seeked', 'durationchange']) {
      this.audio.addEventListener(type, () => this.draw());
    }
    this.audio.addEventListener('play', () => this.setPlaying(true));
    this.audio.addEventListener('pause', () => this.setPlaying(false));
    this.audio.addEventListener('ended', () => this.setPlaying(false));
    this.audio.addEventListener('error', () => {
      this.time.textContent = 'the audio cannot be played in this browser';
    });
    this.tracker = trackListening(this.audio, onRanges, { urgentAt });
    this.animate();
    this.draw();
  }

  get duration() {
    const d = this.audio.duration;
    return Number.isFinite(d) && d > 0 ? d : this.fallbackSeconds;
  }

  toggle() {
    if (this.audio.paused) {
      this.audio.play().catch((err) => { this.time.textContent = `cannot play: ${err.message}`; });
    } else {
      this.audio.pause();
    }
  }

  seek(t) {
    this.audio.currentTime = Math.min(Math.max(t, 0), Math.max(this.duration - 0.05, 0));
    this.draw();
  }

  seekToPointer(e) {
    const box = this.view.getBoundingClientRect();
    this.seek(((e.clientX - box.left) / box.width) * this.duration);
  }

  onKey(e) {
    const t = this.audio.currentTime;
    const moves = { ArrowRight: t + 1, ArrowLeft: t - 1, Home: 0, End: this.duration };
    if (e.key in moves) { e.preventDefault(); this.seek(moves[e.key]); }
    else if (e.key === ' ' || e.key === 'Enter' || e.key === 'k') { e.preventDefault(); this.toggle(); }
  }

  setPlaying(playing) {
    this.root.classList.toggle('playing', playing);
    this.button.textContent = playing ? 'Pause' : 'Play';
    this.button.setAttribute('aria-pressed', String(playing));
  }

  draw() {
    const d = this.duration;
    const t = this.audio.currentTime;
    const f = d > 0 ? Math.min(t / d, 1) : 0;
    this.playhead.style.left = `${f * 100}%`;
    this.view.setAttribute('aria-valuenow', t.toFixed(1));
    this.view.setAttribute('aria-valuetext', `${formatSeconds(t)} of ${formatSeconds(d)}`);
    this.time.textContent = `${formatSeconds(t)} / ${formatSeconds(d)}`;
  }

  animate() {
    // timeupdate fires ~4 times a second; animate the playhead smoothly while playing.
    const tick = () => { if (!this.audio.paused) this.draw(); requestAnimationFrame(tick); };
    requestAnimationFrame(tick);
  }
}
