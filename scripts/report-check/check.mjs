// Opens a `spotfit report` page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) and checks it against what the store holds:
//   - it renders with no console error or warning, no page error, and asks for nothing over
//     the network (the page must open offline);
//   - every charted attempt (article.run) has a CPU and a memory chart whose "used" line has one
//     point per sample the store holds for that attempt (counted in the SVG's polyline, and in
//     the figure's data attributes), and a GPU chart exactly when its samples have GPUs;
//   - an OOM-killed attempt's memory chart marks the kill, and no other's does;
//   - each job's trajectory charts have one point per attempt of the job;
//   - the cost-per-day chart has one bar per day.
// A screenshot of the job named by --shot-job is written to --shot.
//
//   node check.mjs REPORT.html EXPECTED.json --shot FILE.png --shot-job JOB
// EXPECTED.json (scripts/lib/report_expect.py): {"samples": {"RUN/ATTEMPT": n}, "gpu": {"RUN/ATTEMPT": bool}, "oom": {…},
//   "attempts": {"JOB": n}, "days": n, "charted": ["RUN/ATTEMPT", …]}
import { chromium } from 'playwright-core';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const [reportPath, expectedPath] = args;
const opt = (name) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : undefined; };
const shot = opt('--shot');
const shotJob = opt('--shot-job');
const expected = JSON.parse(readFileSync(expectedPath, 'utf8'));

const failures = [];
const fail = (msg) => failures.push(msg);
let checks = 0;
const check = (ok, msg) => { checks += 1; if (!ok) fail(msg); };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const console_ = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console_.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => console_.push(`pageerror: ${e.message}`));
  const requests = [];
  page.on('request', (r) => { if (!r.url().startsWith('file:')) requests.push(r.url()); });
  const started = Date.now();
  await page.goto(pathToFileURL(reportPath).href, { waitUntil: 'load' });
  const renderMs = Date.now() - started;
  check(console_.length === 0, `console errors: ${console_.join(' | ')}`);
  check(requests.length === 0, `the page asked the network for: ${requests.join(', ')}`);

  const seen = await page.evaluate(() => {
    const series = (fig) => {
      const out = [];
      for (let i = 0; i < Number(fig.dataset.series); i += 1) {
        const [name, colour, drawn, given] = fig.getAttribute(`data-series-${i}`).split('|');
        // The series' own polyline: the last one in its colour (plotters draws series after the axes).
        const lines = [...fig.querySelectorAll('polyline')].filter((p) => (p.getAttribute('stroke') || '').toUpperCase() === colour);
        const pts = lines.length ? lines[lines.length - 1].getAttribute('points').trim().split(/\s+/).length : 0;
        out.push({ name, drawn: Number(drawn), given: Number(given), pts });
      }
      return out;
    };
    const runs = [...document.querySelectorAll('article.run')].map((a) => ({
      key: `${a.dataset.run}/${a.dataset.attempt}`,
      samples: Number(a.dataset.samples),
      charts: Object.fromEntries([...a.querySelectorAll('figure.chart')].map((f) => [f.dataset.kind, series(f)])),
      events: Object.fromEntries([...a.querySelectorAll('figure.chart')].map((f) => [f.dataset.kind, f.querySelector('figcaption').textContent])),
      height: a.getBoundingClientRect().height,
      noSamples: /No samples were shipped/.test(a.textContent),
    }));
    const jobs = [...document.querySelectorAll('section.job')].map((s) => ({
      job: s.dataset.job,
      attempts: Number(s.dataset.attempts),
      rows: s.querySelectorAll('tr.attempt').length,
      trajectory: Object.fromEntries([...s.querySelectorAll(':scope > figure.chart')].map((f) => [f.dataset.kind, series(f)])),
    }));
    const bars = document.querySelector('figure[data-kind="cost-per-day"]');
    return { runs, jobs, bars: bars ? Number(bars.dataset.bars) : -1, rects: bars ? bars.querySelectorAll('rect').length : 0 };
  });

  const charted = new Set(expected.charted);
  check(seen.runs.length === charted.size, `${seen.runs.length} runs charted, expected ${charted.size}`);
  for (const r of seen.runs) {
    check(charted.has(r.key), `run ${r.key} is charted but should not be`);
    const want = expected.samples[r.key];
    check(r.samples === want, `run ${r.key}: the page says ${r.samples} samples, the store holds ${want}`);
    if (want === 0) {
      // Nothing shipped (cancelled before the agent started, lost, hung): said, and no chart drawn.
      check(Object.keys(r.charts).length === 0 && r.noSamples, `run ${r.key}: no samples stored, but charts drawn or no note`);
      continue;
    }
    for (const kind of ['cpu', 'memory']) {
      const used = (r.charts[kind] || []).find((s) => s.name === 'used');
      check(used !== undefined, `run ${r.key}: no ${kind} chart with a "used" line`);
      if (used) {
        check(used.given === want && used.drawn === want && used.pts === want,
          `run ${r.key} ${kind}: ${used.pts} points drawn (attribute: ${used.drawn} of ${used.given}), ${want} samples stored`);
      }
      const levels = (r.charts[kind] || []).filter((s) => s.name === 'given' || s.name === 'requested');
      check(levels.length >= 1 && levels.every((s) => s.pts === 2), `run ${r.key} ${kind}: given/requested levels missing`);
    }
    if (expected.oom[r.key]) {
      check(/OOM kill at/.test(r.events.memory || ''), `run ${r.key}: OOM-killed, but its memory chart marks no OOM kill`);
    } else {
      check(!/OOM kill/.test(r.events.memory || ''), `run ${r.key}: an OOM kill is marked on a run that was not killed`);
    }
    check(('gpu' in r.charts) === Boolean(expected.gpu[r.key]), `run ${r.key}: GPU chart ${'gpu' in r.charts ? 'drawn' : 'missing'}`);
    check(r.height > 100, `run ${r.key}: rendered ${r.height}px high`);
  }
  for (const j of seen.jobs) {
    const want = expected.attempts[j.job];
    check(j.attempts === want && j.rows === want, `job ${j.job}: ${j.rows} ledger rows, ${want} attempts stored`);
    for (const kind of ['trajectory-cpu', 'trajectory-memory']) {
      const req = (j.trajectory[kind] || []).find((s) => s.name === 'requested');
      check(req && req.pts === want, `job ${j.job} ${kind}: ${req ? req.pts : 'no'} points for ${want} attempts`);
    }
  }
  check(seen.jobs.length === Object.keys(expected.attempts).length,
    `${seen.jobs.length} job sections, ${Object.keys(expected.attempts).length} jobs stored`);
  check(seen.bars === expected.days && seen.rects >= expected.days, `cost per day: ${seen.bars} bars (${seen.rects} rects), ${expected.days} days`);

  if (shot) {
    const target = shotJob ? page.locator(`section.job[data-job="${shotJob}"]`) : page.locator('body');
    await target.screenshot({ path: shot });
  }
  console.log(JSON.stringify({ checks, failures: failures.length, render_ms: renderMs, runs_charted: seen.runs.length, jobs: seen.jobs.length }));
} finally {
  await browser.close();
}
if (failures.length) {
  for (const f of failures) console.error(`FAIL ${f}`);
  process.exit(1);
}
