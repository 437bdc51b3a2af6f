// Upload page: drag and drop (or pick) several files; each is sent in its own request
// (XMLHttpRequest, for upload progress events) and gets its own row with a progress bar
// and, on failure, the server's message next to it.

import { csrfToken, errorMessage } from './api.js';

const root = document.querySelector('[data-upload]');
const maxBytes = Number(root.dataset.maxBytes);
const endpoint = root.dataset.endpoint;
const zone = root.querySelector('.dropzone');
const input = root.querySelector('input[type="file"]');
const list = root.querySelector('.upload-list');
const CONCURRENCY = 2;
const queue = [];
let running = 0;

function formatBytes(n) {
  if (n >= 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  if (n >= 1024) return `${Math.round(n / 1024)} kB`;
  return `${n} B`;
}

function addRow(file) {
  const li = document.createElement('li');
  li.className = 'upload-item';
  li.dataset.state = 'waiting';
  const name = document.createElement('span');
  name.className = 'upload-name';
  name.textContent = file.name;  // textContent: a file name is never markup
  const size = document.createElement('span');
  size.className = 'upload-size';
  size.textContent = formatBytes(file.size);
  const bar = document.createElement('progress');
  bar.max = 100;
  bar.value = 0;
  bar.setAttribute('aria-label', `Upload progress of ${file.name}`);
  const status = document.createElement('span');
  status.className = 'upload-status';
  status.setAttribute('role', 'status');
  status.textContent = 'waiting';
  li.append(name, size, bar, status);
  list.append(li);
  return { li, bar, status };
}

function fail(row, message) {
  row.li.dataset.state = 'error';
  row.bar.hidden = true;
  row.status.textContent = message;
  row.status.setAttribute('role', 'alert');
}

function succeed(row, song) {
  row.li.dataset.state = 'done';
  row.bar.value = 100;
  row.bar.hidden = true;
  row.status.textContent = '';
  const ok = document.createElement('span');
  ok.textContent = `uploaded as “${song.title}” (${Math.round(song.duration_seconds)} s) · `;
  const link = document.createElement('a');
  link.href = '/songs';
  link.textContent = 'make music from it';
  row.status.append(ok, link);
}

function send(file, row) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    const body = new FormData();
    body.append('file', file, file.name);
    xhr.open('POST', endpoint);
    xhr.setRequestHeader('X-CSRF-Token', csrfToken());
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => {
      if (e.lengthComputable) {
        row.bar.value = Math.round((100 * e.loaded) / e.total);
        row.status.textContent = `${row.bar.value} %`;
      }
    });
    xhr.upload.addEventListener('load', () => { row.status.textContent = 'checking the audio…'; });
    xhr.addEventListener('load', () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        succeed(row, JSON.parse(xhr.responseText).song);
      } else {
        fail(row, errorMessage(xhr.status, xhr.responseText));
      }
      resolve();
    });
    xhr.addEventListener('error', () => { fail(row, 'the upload failed (connection lost or file too large)'); resolve(); });
    xhr.addEventListener('abort', () => { fail(row, 'the upload was cancelled'); resolve(); });
    row.li.dataset.state = 'uploading';
    row.status.textContent = '0 %';
    xhr.send(body);
  });
}

function pump() {
  while (running < CONCURRENCY && queue.length) {
    const { file, row } = queue.shift();
    running += 1;
    send(file, row).finally(() => { running -= 1; pump(); });
  }
}

function accept(files) {
  for (const file of files) {
    const row = addRow(file);
    if (file.size > maxBytes) {
      fail(row, `the file is ${formatBytes(file.size)}; the limit is ${formatBytes(maxBytes)}`);
      continue;
    }
    if (file.size === 0) { fail(row, 'the file is empty'); continue; }
    queue.push({ file, row });
  }
  pump();
}

input.addEventListener('change', () => { accept(input.files); input.value = ''; });
for (const type of ['dragenter', 'dragover']) {
  zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.add('dragging'); });
}
for (const type of ['dragleave', 'drop']) {
  zone.addEventListener(type, (e) => { e.preventDefault(); zone.classList.remove('dragging'); });
}
zone.addEventListener('drop', (e) => { if (e.dataTransfer) accept(e.dataTransfer.files); });
zone.addEventListener('keydown', (e) => {
  if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); input.click(); }
});
zone.addEventListener('click', (e) => { if (e.target === zone) input.click(); });
