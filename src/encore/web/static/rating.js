// The rating control: 1 to 5 stars in half steps, as an ARIA slider (arrow keys, Home,
// End, Page Up/Down; pointer hover and click), plus a submit button. Disabled until the
// server says the minimum listen is reached.

const MIN = 1;
const MAX = 5;
const STEP = 0.5;

function clamp(v) {
  return Math.min(MAX, Math.max(MIN, Math.round(v / STEP) * STEP));
}

export class StarRating {
  /**
   * @param {HTMLElement} root  element holding .stars (role=slider), .stars-fill, button.rate
   * @param {(stars:number)=>Promise<void>} onSubmit
   */
  constructor(root, onSubmit) {
    this.root = root;
    this.slider = root.querySelector('.stars');
    this.fill = root.querySelector('.stars-fill');
    this.button = root.querySelector('button.rate');
    this.hint = root.querySelector('.rating-hint');
    this.onSubmit = onSubmit;
    this.value = null;
    this.enabled = false;
    this.done = false;
    this.slider.addEventListener('keydown', (e) => this.onKey(e));
    this.slider.addEventListener('pointermove', (e) => { if (this.enabled) this.paint(this.fromPointer(e)); });
    this.slider.addEventListener('pointerleave', () => this.paint(this.value));
    this.slider.addEventListener('click', (e) => { if (this.enabled) this.set(this.fromPointer(e)); });
    this.button.addEventListener('click', () => this.submit());
    this.paint(null);
    this.setEnabled(false);
  }

  fromPointer(e) {
    const box = this.slider.getBoundingClientRect();
    const x = Math.min(Math.max(e.clientX - box.left, 0), box.width);
    // Round *up* to the half star under the pointer, never below 1.
    return Math.max(MIN, Math.ceil(((x / box.width) * MAX) / STEP) * STEP);
  }

  onKey(e) {
    if (!this.enabled) return;
    const v = this.value ?? 3;
    const moves = {
      ArrowRight: v + STEP, ArrowUp: v + STEP, ArrowLeft: v - STEP, ArrowDown: v - STEP,
      PageUp: v + 1, PageDown: v - 1, Home: MIN, End: MAX,
    };
    if (e.key in moves) {
      e.preventDefault();
      this.set(this.value === null && (e.key.startsWith('Arrow')) ? v : moves[e.key]);
    } else if (e.key === 'Enter' && this.value !== null) {
      e.preventDefault();
      this.submit();
    }
  }

  set(v) {
    this.value = clamp(v);
    this.slider.setAttribute('aria-valuenow', String(this.value));
    this.slider.setAttribute('aria-valuetext', `${this.value} stars`);
    this.button.disabled = !this.enabled;
    this.button.textContent = `Rate ${this.value} ★`;
    this.paint(this.value);
  }

  paint(v) {
    this.fill.style.width = `${((v ?? 0) / MAX) * 100}%`;
  }

  setEnabled(on, hint) {
    this.enabled = on && !this.done;
    this.root.classList.toggle('disabled', !this.enabled);
    this.slider.setAttribute('aria-disabled', String(!this.enabled));
    this.slider.tabIndex = this.enabled ? 0 : -1;
    this.button.disabled = !this.enabled || this.value === null;
    if (hint !== undefined && this.hint) this.hint.textContent = hint;
  }

  showDone(stars) {
    this.done = true;
    this.set(stars);
    this.setEnabled(false, `You rated this ${stars} ★. Thank you!`);
    this.button.hidden = true;
    this.root.classList.add('rated');
  }

  async submit() {
    if (!this.enabled || this.value === null) return;
    this.button.disabled = true;
    try {
      await this.onSubmit(this.value);
      this.showDone(this.value);
    } catch (err) {
      this.button.disabled = false;
      if (this.hint) this.hint.textContent = err.message;
      this.root.classList.add('error');
    }
  }
}
