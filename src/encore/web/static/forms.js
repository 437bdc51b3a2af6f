// Forms marked <form data-api="/api/..."> are sent to the JSON API with fetch.
//
// Attributes on the form:
//   data-api        the API path (POST unless data-method says otherwise)
//   data-method     HTTP method (default POST)
//   data-redirect   where to go on success ("reload" to reload; "next" to follow ?next=)
//   data-confirm    a question to confirm first
// Field values become a JSON object; inputs with data-type="number" are sent as numbers,
// checkboxes as booleans, empty optional fields are left out. The element with class
// "form-error" inside the form shows the error; "form-result" shows a success message
// (the response's "message" field) when the form stays on the page.

import { api } from './api.js';

function formToJson(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    if (el.type === 'checkbox') { out[el.name] = el.checked; continue; }
    if (el.type === 'radio' && !el.checked) continue;
    if (el.value === '' && !el.required) continue;
    out[el.name] = el.dataset.type === 'number' ? Number(el.value) : el.value;
  }
  return out;
}

export function safeNext(next, origin = window.location.origin) {
  // Only paths of this site. A string check is not enough: browsers drop tabs and
  // newlines and read "\\" as "/", so "/\t/evil.com" means "//evil.com". The candidate
  // must have no whitespace, control character or backslash, and resolve to this origin.
  if (!next || !next.startsWith('/') || next.startsWith('//')) return null;
  if (/[\u0000-\u0020\u007f\\]/.test(next)) return null;
  let url;
  try { url = new URL(next, origin); } catch (_) { return null; }
  if (url.origin !== origin) return null;
  return url.pathname + url.search + url.hash;
}

async function submit(form, event) {
  event.preventDefault();
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
  const errorEl = form.querySelector('.form-error') || (form.closest('section') && form.closest('section').querySelector(':scope > .form-error'));
  const resultEl = form.querySelector('.form-result');
  const button = form.querySelector('[type="submit"]');
  if (errorEl) { errorEl.textContent = ''; errorEl.hidden = true; }
  if (button) button.disabled = true;
  try {
    const data = await api(form.dataset.api, { method: form.dataset.method || 'POST', body: formToJson(form) });
    const redirect = form.dataset.redirect;
    if (redirect === 'reload') { window.location.reload(); return; }
    if (redirect === 'next') { window.location.assign(safeNext(new URLSearchParams(window.location.search).get('next')) || (data && data.next) || '/'); return; }
    if (redirect) { window.location.assign(redirect.replace('{id}', data && data.id)); return; }
    if (resultEl) { resultEl.textContent = (data && data.message) || 'Done.'; resultEl.hidden = false; }
    form.dispatchEvent(new CustomEvent('api:done', { detail: data }));
  } catch (err) {
    if (errorEl) { errorEl.textContent = err.message; errorEl.hidden = false; }
  } finally {
    if (button) button.disabled = false;
  }
}

export function enhanceForms(root = document) {
  for (const form of root.querySelectorAll('form[data-api]')) {
    if (form.dataset.enhanced) continue;
    form.dataset.enhanced = '1';
    form.addEventListener('submit', (event) => submit(form, event));
  }
}

enhanceForms();
