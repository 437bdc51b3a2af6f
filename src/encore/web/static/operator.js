// Operator pages: show a new invitation code with its sign-up link.
const invite = document.querySelector('form.invite-form');
if (invite) {
  invite.addEventListener('api:done', (event) => {
    const { code, url } = event.detail;
    const out = invite.querySelector('.form-result');
    out.textContent = '';
    const box = document.createElement('span');
    box.className = 'code-box';
    box.textContent = code;
    const link = document.createElement('a');
    link.href = url;
    link.textContent = 'sign-up link';
    out.append('Code: ', box, ' · ', link);
    out.hidden = false;
  });
}
