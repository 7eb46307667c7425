// alignbench report: table sorting, column groups and the sample browser. The page's CSP
// allows this script alone, by its SHA-256 (reports/build.py hashes this file); it reads the
// page and never writes model text as HTML (textContent only), and loads nothing.
(function () {
  "use strict";

  // A cell's sort key: its data-v where the template wrote one, else its text; a number only
  // where the whole of it is one ("2024-01-01" and "1st" are text), null where it is empty
  // ("–", no value), which sorts last either way.
  const NUMBER = /^[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?$/i;
  function key(td) {
    const raw = td.dataset.v !== undefined ? td.dataset.v : td.textContent.trim();
    if (raw === "" || raw === "–" || raw === "nan") return null;
    return NUMBER.test(raw) ? Number(raw) : raw.toLowerCase();
  }

  // numbers before text in either direction; the direction orders numbers among themselves
  // and text among itself
  function compare(a, b, sign) {
    const na = typeof a === "number", nb = typeof b === "number";
    if (na !== nb) return na ? -1 : 1;
    return sign * (na ? a - b : a < b ? -1 : a > b ? 1 : 0);
  }

  function sortBy(table, th) {
    const col = Number(th.dataset.col !== undefined ? th.dataset.col : th.cellIndex);
    const was = th.getAttribute("aria-sort");
    // first click: best first for a metric with a direction, ascending otherwise
    const first = th.dataset.higher === "1" ? "descending" : "ascending";
    const dir = was ? (was === "ascending" ? "descending" : "ascending") : first;
    table.querySelectorAll("th[aria-sort]").forEach((h) => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", dir);
    const body = table.tBodies[0];
    const rows = Array.from(body.rows).map((tr, i) => ({ tr, i, k: key(tr.cells[col]) }));
    rows.sort((a, b) => {
      if (a.k === null || b.k === null) return (a.k === null) - (b.k === null) || a.i - b.i;
      return compare(a.k, b.k, dir === "ascending" ? 1 : -1) || a.i - b.i;
    });
    rows.forEach((r) => body.appendChild(r.tr));
  }

  document.querySelectorAll("table.sortable").forEach((table) => {
    const heads = table.tHead.rows;
    const last = heads[heads.length - 1];
    table.querySelectorAll("thead th").forEach((th) => {
      // a header sorts when it names one column: marked with data-col, or in the last row
      if (th.dataset.col === undefined && (th.parentElement !== last || th.colSpan > 1)) return;
      if (th.dataset.col === undefined) th.dataset.col = String(th.cellIndex);
      th.addEventListener("click", () => sortBy(table, th));
    });
  });

  // column groups: a checkbox per eval (and per metric's slices) shows or hides its columns
  document.querySelectorAll("#column-groups input[data-group]").forEach((box) => {
    box.addEventListener("change", () => {
      document.querySelectorAll('#comparison-table [data-group="' + box.dataset.group + '"]')
        .forEach((el) => el.classList.toggle("hide", !box.checked));
    });
  });

  // the sample browser: an answer is shown when it matches every filter; a prompt with no
  // answer shown is hidden with it
  const filters = ["f-method", "f-seed", "f-prompt", "f-tag"].map((id) => document.getElementById(id));
  function applyFilters() {
    if (filters.some((f) => f === null)) return;
    const [method, seed, prompt, tag] = filters.map((f) => f.value);
    let shown = 0;
    document.querySelectorAll(".prompt-block").forEach((block) => {
      let any = false;
      block.querySelectorAll(".card").forEach((card) => {
        const ok = (!method || card.dataset.method === method)
          && (!seed || card.dataset.seed === seed)
          && (!prompt || block.dataset.prompt === prompt)
          && (!tag || JSON.parse(card.dataset.tags).includes(tag));
        card.classList.toggle("hide", !ok);
        any = any || ok;
        shown += ok ? 1 : 0;
      });
      block.classList.toggle("hide", !any);
    });
    const count = document.getElementById("samples-count");
    if (count) count.textContent = shown + " answer(s) shown.";
  }
  filters.forEach((f) => f && f.addEventListener("change", applyFilters));
  applyFilters();
})();
