// Sends the pasted token once; the listener answers with an HttpOnly session cookie.
const form = document.getElementById('login-form');
const error = document.getElementById('login-error');

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  error.hidden = true;
  const token = document.getElementById('token').value.trim();
  try {
    const response = await fetch('/console/session', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-hyok-console': '1' },
      body: JSON.stringify({ token }),
      credentials: 'same-origin',
    });
    if (response.ok) {
      window.location.assign('/console');
      return;
    }
    const body = await response.json().catch(() => ({}));
    error.textContent = `Login refused (${response.status}): ${body.message ?? 'no reason given'}`;
  } catch (failure) {
    error.textContent = `Login failed: ${failure.message}`;
  }
  error.hidden = false;
});
