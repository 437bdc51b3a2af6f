// What was really played: [start, end] intervals of media time, built from the media
// element's events (a seek closes the current interval and opens a new one where playback
// resumes, so skipped parts never count). The server takes the union of the intervals, so
// re-sending all of them is idempotent.

export class PlayedRanges {
  constructor() {
    this.closed = [];      // finished intervals, merged
    this.current = null;   // [start, end] while playing
  }

  start(t) {
    this.close();
    this.current = [t, t];
  }

  /** Playback reached media time t (no seek in between). */
  advance(t) {
    if (this.current === null) { this.current = [t, t]; return; }
    if (t >= this.current[1]) {
      this.current[1] = t;
    } else {             // time went backwards without a seek event (loop): new interval
      this.start(t);
    }
  }

  close() {
    if (this.current !== null && this.current[1] > this.current[0]) {
      this.closed = merge([...this.closed, this.current]);
    }
    this.current = null;
  }

  /** The merged intervals so far, rounded to milliseconds. */
  ranges() {
    const all = this.current !== null && this.current[1] > this.current[0]
      ? merge([...this.closed, this.current]) : this.closed;
    return all.map(([a, b]) => [Math.round(a * 1000) / 1000, Math.round(b * 1000) / 1000]);
  }

  /** Seconds of distinct media time played. */
  total() {
    return this.ranges().reduce((s, [a, b]) => s + (b - a), 0);
  }
}

export function merge(intervals) {
  const sorted = intervals.filter(([a, b]) => b > a).map(([a, b]) => [a, b]).sort((x, y) => x[0] - y[0]);
  const out = [];
  for (const iv of sorted) {
    const last = out[out.length - 1];
    if (last && iv[0] <= last[1] + 1e-3) last[1] = Math.max(last[1], iv[1]);
    else out.push(iv);
  }
  return out;
}

/**
 * Follow `media` and report its played ranges.
 *
 * `send(ranges, {final})` is called with every change: on a heartbeat every `intervalMs`
 * while something new was played, at once on pause/end and when `urgentAt` seconds are
 * first reached (so the rating unlocks without waiting), and as a final flush when the page
 * is hidden or left (`final: true`: the sender must use fetch keepalive or sendBeacon).
 */
export function trackListening(media, send, { intervalMs = 3000, urgentAt = Infinity } = {}) {
  const played = new PlayedRanges();
  let lastSent = '[]';
  let urgentDone = false;

  const flush = (final = false) => {
    const ranges = played.ranges();
    const key = JSON.stringify(ranges);
    if (key === lastSent && !final) return;
    if (key === '[]') return;
    lastSent = key;
    send(ranges, { final });
  };

  media.addEventListener('playing', () => { if (!media.seeking) played.start(media.currentTime); });
  media.addEventListener('timeupdate', () => {
    if (media.paused || media.seeking) return;
    played.advance(media.currentTime);
    if (!urgentDone && played.total() >= urgentAt) { urgentDone = true; flush(); }
  });
  media.addEventListener('seeking', () => played.close());
  media.addEventListener('seeked', () => { if (!media.paused) played.start(media.currentTime); });
  const stop = () => { if (!media.seeking) played.advance(media.currentTime); played.close(); flush(); };
  media.addEventListener('pause', stop);
  media.addEventListener('ended', stop);

  const timer = setInterval(() => flush(), intervalMs);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'hidden') flush(true);
  });
  window.addEventListener('pagehide', () => { flush(true); clearInterval(timer); });
  return { played, flush };
}
