// The dashboard's banner for a refused edit of the flows (hot reload): file:line and message of
// each problem, and the flows kept at their last good version. Drawn by the server with the page,
// then kept up to date from GET /api/flows every data-poll-ms milliseconds.
(function () {
  'use strict';
  const banner = document.getElementById('flows-refused');
  if (!banner) {
    return;
  }
  const list = document.getElementById('flows-refused-problems');
  const held = document.getElementById('flows-refused-held');
  const every = Number(banner.dataset.pollMs) || 3000;

  function draw(refused) {
    list.replaceChildren();
    if (!refused || !refused.problems || refused.problems.length === 0) {
      banner.hidden = true;
      return;
    }
    for (const problem of refused.problems) {
      const item = document.createElement('li');
      const where = document.createElement('code');
      where.textContent = `${problem.path}:${problem.line}`;
      item.append(where, ` ${problem.message}`);
      list.append(item);
    }
    const back = refused.held_back || [];
    held.textContent = back.length
      ? `; still on the last good version: ${back.join(', ')}`
      : '; the last good flows stay live';
    banner.hidden = false;
  }

  async function poll() {
    try {
      const answer = await fetch('/api/flows', { credentials: 'same-origin',
                                                 headers: { Accept: 'application/json' } });
      if (answer.ok) {
        draw((await answer.json()).refused);
      }
    } catch (error) {
      // the server is restarting or unreachable: keep what is shown, try again later
    }
    window.setTimeout(poll, every);
  }

  window.setTimeout(poll, every);
}());
