// ferry ui's only script: loads the parts of a page that read many manifests after the page
// is drawn, selects every cache of a page, and asks before deleting. Fragments come from this
// server and are rendered (and escaped) there.
'use strict';

// Fragments start after the page has loaded, so they never hold up its first drawing.
window.addEventListener('load', () => {
  for (const el of document.querySelectorAll('[data-fragment]')) {
    const url = el.getAttribute('data-fragment');
    const slot = document.createElement('div');
    slot.className = 'fragment loading';
    slot.textContent = 'loading…';
    const keep = el.querySelector('h2, figcaption');
    el.replaceChildren(...(keep ? [keep, slot] : [slot]));
    fetch(url, { credentials: 'same-origin' })
      .then((r) => r.text())
      .then((html) => {
        // The server renders fragments with every store value escaped.
        const doc = new DOMParser().parseFromString(html, 'text/html');
        slot.replaceChildren(...doc.body.childNodes);
        slot.className = 'fragment loaded';
        el.setAttribute('data-loaded', 'true');
      })
      .catch((e) => {
        slot.textContent = 'failed to load: ' + e;
        slot.className = 'fragment failed';
      });
  }
});

document.addEventListener('DOMContentLoaded', () => {
  // A link to a layer (from the graph or a clash) opens its file list.
  const openTarget = () => {
    const id = decodeURIComponent(window.location.hash.slice(1));
    const el = id && document.getElementById(id);
    if (el && el.tagName === 'DETAILS') el.open = true;
  };
  window.addEventListener('hashchange', openTarget);
  openTarget();

  const all = document.getElementById('select-all');
  if (all) {
    all.addEventListener('change', () => {
      for (const box of document.querySelectorAll('input.pick')) box.checked = all.checked;
    });
  }

  const del = document.getElementById('delete-form');
  if (del) {
    del.addEventListener('submit', (ev) => {
      const picked = document.querySelectorAll('input.pick:checked');
      if (picked.length === 0) {
        ev.preventDefault();
        window.alert('Select the caches to delete first.');
        return;
      }
      const keys = [...picked].map((b) => b.closest('tr').getAttribute('data-key'));
      const msg = `Delete ${picked.length} cache${picked.length === 1 ? '' : 's'}?\n\n` +
        keys.slice(0, 10).join('\n') + (keys.length > 10 ? '\n…' : '');
      if (!window.confirm(msg)) ev.preventDefault();
    });
  }
});
