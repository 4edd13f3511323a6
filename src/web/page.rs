//! The status page: one server-rendered HTML document, readable without JavaScript, that
//! refreshes itself every few seconds and reflows to a phone's width (tables become
//! stacked cards below 700 px).

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::view::{BindingState, FindingLevel, Outcome, RpoLevel, ServiceView};
use crate::progress::Progress;

/// Short enough to follow a restore tier by tier, long enough not to load the server.
const REFRESH_SECONDS: u32 = 5;

/// Escape text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `1.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// `2 h 5 min`, `3 min 20 s`, `850 ms`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms} ms");
    }
    let s = ms / 1000;
    match s {
        0..60 => {
            let tenths = (ms % 1000) / 100;
            if s < 10 && tenths > 0 {
                format!("{s}.{tenths} s")
            } else {
                format!("{s} s")
            }
        }
        60..3600 if s.is_multiple_of(60) => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ if (s % 86_400) / 3600 == 0 => format!("{} d", s / 86_400),
        _ => format!("{} d {} h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// An age or a wait, to the precision a person reads it at: `42 s`, `6 min`, `2 h 5 min`.
pub fn coarse(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        _ => duration_ms(ms - ms % 60_000),
    }
}

fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let d = (t - now).num_milliseconds();
    let span = coarse(d.unsigned_abs());
    if d.abs() < 1000 {
        "now".to_owned()
    } else if d < 0 {
        format!("{span} ago")
    } else {
        format!("in {span}")
    }
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn time_tag(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!(
        r#"<time datetime="{}" title="{}">{}</time>"#,
        t.to_rfc3339(),
        when(t),
        esc(&relative(t, now))
    )
}

const CSS: &str = r#"
:root{--bg:#f4f6f8;--card:#fff;--ink:#1b1f24;--muted:#5b6472;--line:#e3e7ec;--accent:#2457c5;
--green:#1a7f37;--green-bg:#e6f4ea;--amber:#9a5b00;--amber-bg:#fff4d6;--red:#c62828;--red-bg:#fdecea;--grey-bg:#eef1f4}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{background:#111827;color:#f9fafb;padding:14px 24px;display:flex;flex-wrap:wrap;align-items:center;gap:10px 18px}
header .brand{font-weight:700;letter-spacing:.02em;font-size:17px;display:flex;align-items:center;gap:8px}
header .brand::before{content:"";width:12px;height:12px;border-radius:3px;background:linear-gradient(135deg,#60a5fa,#2457c5)}
header .cluster{font-size:15px}
header .cluster b{font-weight:600}
header .uid{color:#9ca3af;font:12px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
header .spacer{flex:1}
.chip{display:inline-flex;align-items:center;gap:6px;border-radius:999px;padding:3px 10px;font-size:13px;font-weight:600;white-space:nowrap}
.chip::before{content:"";width:8px;height:8px;border-radius:50%;background:currentColor}
header .chip{background:#1f2937;color:#e5e7eb}
header .chip.ok{color:#4ade80}
header .chip.bad{color:#f87171}
header .chip.info{color:#93c5fd}
main{max-width:1200px;margin:0 auto;padding:20px 24px 32px}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(250px,1fr));gap:16px;margin-bottom:20px}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;box-shadow:0 1px 2px rgba(16,24,40,.04)}
.card h2,section h2{margin:0 0 10px;font-size:13px;text-transform:uppercase;letter-spacing:.06em;color:var(--muted);font-weight:600}
.big{font-size:30px;font-weight:700;line-height:1.15}
.sub{color:var(--muted);font-size:13px}
.rpo{border-left:6px solid var(--grey-bg)}
.rpo.green{border-left-color:var(--green)}.rpo.amber{border-left-color:#e0a000}.rpo.red{border-left-color:var(--red)}
.badge{display:inline-block;border-radius:6px;padding:2px 8px;font-size:12px;font-weight:700;text-transform:uppercase;letter-spacing:.04em}
.badge.green,.badge.ok,.badge.succeeded,.badge.passed{background:var(--green-bg);color:var(--green)}
.badge.amber,.badge.warning,.badge.unverified,.badge.abandoned{background:var(--amber-bg);color:var(--amber)}
.badge.red,.badge.critical,.badge.missing,.badge.failed{background:var(--red-bg);color:var(--red)}
.badge.info,.badge.grey{background:var(--grey-bg);color:var(--muted)}
.bar{height:10px;background:var(--grey-bg);border-radius:999px;overflow:hidden;margin:10px 0 6px}
.bar>span{display:block;height:100%;background:var(--accent);border-radius:999px}
.bar.slim{height:6px;margin:6px 0 2px;min-width:80px}
td.prog{width:45%}
.pct{font-size:18px;color:var(--muted);font-weight:600}
.when{white-space:nowrap;text-align:right}
.bar.failed>span{background:var(--red)}.bar.done>span{background:var(--green)}
ul.plain{list-style:none;margin:0;padding:0}
ul.plain li{display:flex;justify-content:space-between;gap:10px;padding:5px 0;border-bottom:1px solid var(--line)}
ul.plain li:last-child{border-bottom:0}
.counts{display:flex;gap:8px;flex-wrap:wrap;margin-top:6px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:16px 18px;margin-bottom:20px;box-shadow:0 1px 2px rgba(16,24,40,.04)}
section h2 .n{color:var(--ink);background:var(--grey-bg);border-radius:999px;padding:0 8px;margin-left:6px;font-size:12px}
table{width:100%;border-collapse:collapse;font-size:14px}
th{text-align:left;font-weight:600;color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em;border-bottom:1px solid var(--line);padding:6px 10px 6px 0}
td{border-bottom:1px solid var(--line);padding:8px 10px 8px 0;vertical-align:top}
tr:last-child td{border-bottom:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;word-break:break-all}
.empty{color:var(--muted);font-style:italic;margin:4px 0}
.reason{color:var(--muted);font-size:13px}
footer{color:var(--muted);font-size:13px;text-align:center;padding:0 16px 28px}
footer a{color:var(--accent)}
@media (max-width:700px){
 header{padding:12px 14px}
 main{padding:14px 12px 24px}
 .grid{gap:12px}
 .big{font-size:26px}
 table:not(.compact),table:not(.compact) tbody,table:not(.compact) tr,table:not(.compact) td{display:block;width:100%}
 table:not(.compact) thead{display:none}
 table:not(.compact) tr{border:1px solid var(--line);border-radius:8px;padding:6px 10px;margin-bottom:10px}
 table:not(.compact) td{display:flex;justify-content:space-between;gap:12px;border:0;padding:4px 0;text-align:right}
 table:not(.compact) td::before{content:attr(data-label);color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em;text-align:left;flex:none}
 table.compact td,table.compact th{padding-right:6px;font-size:13px}
 table.compact td.prog{width:40%}
 tr:last-child td{border:0}
}
"#;

/// Render the page for `view` and `progress` as of `now`.
pub fn render(view: &ServiceView, progress: &Progress, now: DateTime<Utc>) -> String {
    let mut h = String::with_capacity(32 * 1024);
    let title = if view.cluster.name.is_empty() {
        "coldstart".to_owned()
    } else {
        format!("{} · coldstart", view.cluster.name)
    };
    let _ = write!(
        h,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>{}</title><style>{CSS}</style></head><body>"#,
        esc(&title)
    );
    header(&mut h, view);
    h.push_str("<main>");
    cards(&mut h, view, progress, now);
    operation_section(&mut h, view, progress, now);
    snapshots_section(&mut h, view, now);
    bindings_section(&mut h, view);
    audit_section(&mut h, view, now);
    drills_section(&mut h, view, now);
    events_section(&mut h, view, now);
    h.push_str("</main>");
    let _ = write!(
        h,
        r#"<footer>Refreshes every {REFRESH_SECONDS} s · rendered {} · <a href="/api/v1/status">JSON API</a> · <a href="/metrics">metrics</a></footer></body></html>"#,
        now.format("%H:%M:%S UTC")
    );
    h
}

fn header(h: &mut String, v: &ServiceView) {
    let name = if v.cluster.name.is_empty() {
        "unnamed cluster"
    } else {
        &v.cluster.name
    };
    let _ = write!(
        h,
        r#"<header><span class="brand">coldstart</span><span class="cluster">cluster <b>{}</b></span><span class="uid" title="kube-system UID">{}</span><span class="spacer"></span>"#,
        esc(name),
        esc(&v.cluster.uid)
    );
    let role = if v.replica.leading {
        r#"<span class="chip info">leader</span>"#.to_owned()
    } else {
        format!(
            r#"<span class="chip" title="{}">follower · leader {}</span>"#,
            esc(&v.replica.identity),
            esc(v.replica.leader.as_deref().unwrap_or("unknown"))
        )
    };
    h.push_str(&role);
    if v.ready.ready {
        h.push_str(r#"<span class="chip ok">ready</span>"#);
    } else {
        let _ = write!(
            h,
            r#"<span class="chip bad" title="{}">not ready</span>"#,
            esc(&v.ready.reason)
        );
    }
    h.push_str("</header>");
}

fn cards(h: &mut String, v: &ServiceView, p: &Progress, now: DateTime<Utc>) {
    h.push_str(r#"<div class="grid">"#);
    // RPO
    let rpo = v.rpo(now);
    let level = rpo.level.as_str();
    let word = match rpo.level {
        RpoLevel::Green => "within target",
        RpoLevel::Amber => "over target",
        RpoLevel::Red => "at risk",
    };
    let age = rpo
        .age_seconds
        .map_or_else(|| "no snapshot".to_owned(), |a| coarse(a * 1000));
    let _ = write!(
        h,
        r#"<div class="card rpo {level}"><h2>Recovery point</h2><div class="big">{}</div><div class="sub">since the last good snapshot · target {}</div><div style="margin-top:8px"><span class="badge {level}">{level}</span> <span class="sub">{word}</span></div>"#,
        esc(&age),
        duration_ms(rpo.target_seconds * 1000),
    );
    if let Some(s) = v.last_good_snapshot() {
        let _ = write!(
            h,
            r#"<div class="sub" style="margin-top:6px">last good <code>{}</code></div>"#,
            esc(&s.id)
        );
    }
    h.push_str("</div>");

    // Operation
    h.push_str(r#"<div class="card"><h2>Operation</h2>"#);
    if let Some(started) = p.started_at {
        let (done, total) = (p.done(), p.total());
        let pct = (done * 100).checked_div(total).unwrap_or(0);
        let state = match p.succeeded {
            Some(true) => "done",
            Some(false) => "failed",
            None => "",
        };
        let elapsed = (now - started).num_milliseconds().max(0).unsigned_abs();
        let _ = write!(
            h,
            r#"<div class="big">{} <span class="pct">{pct}%</span></div><div class="sub">{}</div><div class="bar {state}" role="progressbar" aria-valuenow="{pct}" aria-valuemin="0" aria-valuemax="100"><span style="width:{pct}%"></span></div><div class="sub">{done} / {total} objects · {} elapsed{}</div>"#,
            esc(&p.operation),
            esc(&p.phase),
            duration_ms(elapsed),
            last_rto(v).map_or_else(String::new, |r| format!(
                " · last drill RTO {}",
                duration_ms(r)
            )),
        );
    } else if let Some(r) = &v.running {
        let _ = write!(
            h,
            r#"<div class="big">{}</div><div class="sub">{} · started {}</div>"#,
            esc(&r.job),
            esc(&r.trigger),
            time_tag(r.started_at, now)
        );
    } else {
        h.push_str(r#"<div class="big" style="color:var(--muted)">idle</div><div class="sub">no restore, stop or start running</div>"#);
    }
    h.push_str("</div>");

    // Next runs
    h.push_str(r#"<div class="card"><h2>Next runs</h2>"#);
    if v.schedules.is_empty() {
        h.push_str(r#"<p class="empty">no schedules</p>"#);
    } else {
        h.push_str(r#"<ul class="plain">"#);
        for s in &v.schedules {
            let next = s
                .next_run
                .map_or_else(|| "—".to_owned(), |t| time_tag(t, now));
            let _ = write!(
                h,
                r#"<li><span><b>{}</b><br><span class="sub mono">{}</span></span><span class="when">{next}</span></li>"#,
                esc(&s.job),
                esc(&s.cron)
            );
        }
        h.push_str("</ul>");
    }
    h.push_str("</div>");

    // Last drill + audit
    h.push_str(r#"<div class="card"><h2>Last drill</h2>"#);
    match v.drills.iter().max_by_key(|d| d.at) {
        Some(d) => {
            let verdict = if d.passed { "passed" } else { "failed" };
            let _ = write!(
                h,
                r#"<div class="big">{}</div><div class="sub">recovery time (RTO) · RPO {} · {}</div><div style="margin-top:8px"><span class="badge {verdict}">{verdict}</span></div>"#,
                duration_ms(d.rto_ms),
                coarse(d.rpo_s * 1000),
                time_tag(d.at, now)
            );
        }
        None => h.push_str(r#"<p class="empty">no drill yet</p>"#),
    }
    h.push_str(r#"<h2 style="margin-top:14px">Audit</h2><div class="counts">"#);
    for (sev, n) in v.findings_by_severity() {
        let class = if n == 0 { "grey" } else { sev.as_str() };
        let _ = write!(
            h,
            r#"<span class="badge {class}">{n} {}</span>"#,
            sev.as_str()
        );
    }
    h.push_str("</div></div></div>");
}

/// A drill's RTO, with the hydration still ahead of disks restored from cloud snapshots.
fn rto_cell(d: &super::view::DrillRow) -> String {
    if d.hydration_ms == 0 {
        duration_ms(d.rto_ms)
    } else {
        format!(
            "{} + {} hydrating",
            duration_ms(d.rto_ms),
            duration_ms(d.hydration_ms)
        )
    }
}

fn last_rto(v: &ServiceView) -> Option<u64> {
    v.drills.iter().max_by_key(|d| d.at).map(|d| d.rto_ms)
}

fn section_head(h: &mut String, title: &str, n: usize) {
    let _ = write!(
        h,
        r#"<section><h2>{}<span class="n">{n}</span></h2>"#,
        esc(title)
    );
}

fn operation_section(h: &mut String, v: &ServiceView, p: &Progress, now: DateTime<Utc>) {
    let Some(started) = p.started_at else { return };
    let _ = write!(
        h,
        r#"<section><h2>{} progress</h2><p class="sub">phase <b>{}</b> · started {}"#,
        esc(&p.operation),
        esc(&p.phase),
        time_tag(started, now)
    );
    if let Some(rto) = last_rto(v) {
        let elapsed = (now - started).num_milliseconds().max(0).unsigned_abs();
        let _ = write!(
            h,
            " · {} elapsed of the last drill's RTO {}",
            duration_ms(elapsed),
            duration_ms(rto)
        );
    }
    h.push_str("</p>");
    if p.tiers.is_empty() {
        h.push_str("</section>");
        return;
    }
    h.push_str(r#"<table class="compact"><thead><tr><th>Tier</th><th>Progress</th><th class="num">Failed</th><th>State</th></tr></thead><tbody>"#);
    for (tier, t) in &p.tiers {
        let state = if t.failed > 0 {
            r#"<span class="badge failed">failures</span>"#
        } else if t.done >= t.total {
            r#"<span class="badge ok">done</span>"#
        } else if p.current_tier == Some(*tier) {
            r#"<span class="badge info">running</span>"#
        } else {
            r#"<span class="badge grey">waiting</span>"#
        };
        let pct = (t.done * 100).checked_div(t.total).unwrap_or(100);
        let _ = write!(
            h,
            r#"<tr><td>{}</td><td class="prog"><div class="bar slim"><span style="width:{pct}%"></span></div><span class="sub">{} / {}</span></td><td class="num">{}</td><td>{state}</td></tr>"#,
            esc(tier.name()),
            thousands(t.done as u64),
            thousands(t.total as u64),
            t.failed
        );
    }
    h.push_str("</tbody></table></section>");
}

fn snapshots_section(h: &mut String, v: &ServiceView, now: DateTime<Utc>) {
    section_head(h, "Snapshots", v.snapshots.len());
    if v.snapshots.is_empty() {
        h.push_str(r#"<p class="empty">no snapshot yet</p></section>"#);
        return;
    }
    h.push_str(r#"<table><thead><tr><th>Taken</th><th>Snapshot</th><th class="num">Objects</th><th class="num">Size</th><th class="num">Written</th><th class="num">Duration</th><th>State</th></tr></thead><tbody>"#);
    for s in &v.snapshots {
        let state = match (s.complete, s.verified) {
            (true, true) => r#"<span class="badge ok">verified</span>"#,
            (true, false) => r#"<span class="badge info">complete</span>"#,
            (false, _) => r#"<span class="badge failed">incomplete</span>"#,
        };
        let _ = write!(
            h,
            r#"<tr><td data-label="Taken">{}</td><td data-label="Snapshot"><code>{}</code> <span class="sub">{}</span></td><td class="num" data-label="Objects">{}</td><td class="num" data-label="Size">{}</td><td class="num" data-label="Written">{}</td><td class="num" data-label="Duration">{}</td><td data-label="State">{state}</td></tr>"#,
            time_tag(s.taken_at, now),
            esc(&s.id),
            esc(&s.trigger),
            thousands(s.objects),
            bytes(s.bytes_total),
            bytes(s.bytes_written),
            duration_ms(s.duration_ms),
        );
    }
    h.push_str("</tbody></table></section>");
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn bindings_section(h: &mut String, v: &ServiceView) {
    section_head(h, "Bindings", v.bindings.len());
    if v.bindings.is_empty() {
        h.push_str(r#"<p class="empty">no bindings recorded yet</p></section>"#);
        return;
    }
    h.push_str(r#"<table><thead><tr><th>Kind</th><th>Object</th><th>Bound to</th><th>Verification</th></tr></thead><tbody>"#);
    let mut rows: Vec<_> = v.bindings.iter().collect();
    rows.sort_by(|a, b| (a.kind, &a.object).cmp(&(b.kind, &b.object)));
    for b in rows {
        let state = b.verification.as_str();
        let reason = match (&b.reason, b.verification) {
            (Some(r), _) => format!(r#"<div class="reason">{}</div>"#, esc(r)),
            (None, BindingState::Ok) | (None, _) => String::new(),
        };
        let _ = write!(
            h,
            r#"<tr><td data-label="Kind">{}</td><td data-label="Object"><code>{}</code></td><td data-label="Bound to"><code>{}</code></td><td data-label="Verification"><span class="badge {state}">{state}</span>{reason}</td></tr>"#,
            b.kind.as_str(),
            esc(&b.object),
            esc(&b.target),
        );
    }
    h.push_str("</tbody></table></section>");
}

fn audit_section(h: &mut String, v: &ServiceView, now: DateTime<Utc>) {
    section_head(h, "Audit findings", v.audit.findings.len());
    if let Some(at) = v.audit.at {
        let _ = write!(
            h,
            r#"<p class="sub">what would be lost if this cluster were deleted now · audited {}</p>"#,
            time_tag(at, now)
        );
    }
    if v.audit.findings.is_empty() {
        let msg = if v.audit.at.is_some() {
            "nothing would be lost"
        } else {
            "no audit yet"
        };
        let _ = write!(h, r#"<p class="empty">{msg}</p></section>"#);
        return;
    }
    h.push_str(r#"<table><thead><tr><th>Severity</th><th>Finding</th><th>Object</th><th>Detail</th></tr></thead><tbody>"#);
    let mut rows: Vec<_> = v.audit.findings.iter().collect();
    rows.sort_by_key(|f| f.severity);
    for f in rows {
        let sev = f.severity.as_str();
        let _ = write!(
            h,
            r#"<tr><td data-label="Severity"><span class="badge {sev}">{sev}</span></td><td data-label="Finding">{}</td><td data-label="Object"><code>{}</code></td><td data-label="Detail">{}</td></tr>"#,
            esc(&f.kind),
            esc(&f.object),
            esc(&f.message),
        );
    }
    h.push_str("</tbody></table></section>");
    let _ = FindingLevel::ALL;
}

fn drills_section(h: &mut String, v: &ServiceView, now: DateTime<Utc>) {
    section_head(h, "Drills", v.drills.len());
    if v.drills.is_empty() {
        h.push_str(r#"<p class="empty">no drill yet</p></section>"#);
        return;
    }
    h.push_str(r#"<table><thead><tr><th>When</th><th>Snapshot</th><th class="num">RTO</th><th class="num">RPO</th><th>Result</th></tr></thead><tbody>"#);
    for d in &v.drills {
        let verdict = if d.passed { "passed" } else { "failed" };
        let failures = if d.failures.is_empty() {
            String::new()
        } else {
            format!(
                r#"<div class="reason">{}</div>"#,
                d.failures
                    .iter()
                    .map(|f| esc(f))
                    .collect::<Vec<_>>()
                    .join("<br>")
            )
        };
        let _ = write!(
            h,
            r#"<tr><td data-label="When">{}</td><td data-label="Snapshot"><code>{}</code></td><td class="num" data-label="RTO">{}</td><td class="num" data-label="RPO">{}</td><td data-label="Result"><span class="badge {verdict}">{verdict}</span>{failures}</td></tr>"#,
            time_tag(d.at, now),
            esc(&d.snapshot_id),
            rto_cell(d),
            duration_ms(d.rpo_s * 1000),
        );
    }
    h.push_str("</tbody></table></section>");
}

fn events_section(h: &mut String, v: &ServiceView, now: DateTime<Utc>) {
    if v.events.is_empty() {
        return;
    }
    section_head(h, "Recent runs", v.events.len());
    h.push_str(r#"<table><thead><tr><th>When</th><th>Job</th><th>Outcome</th><th>Detail</th></tr></thead><tbody>"#);
    for e in v.events.iter().take(15) {
        let o = match e.outcome {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Abandoned => "abandoned",
        };
        let _ = write!(
            h,
            r#"<tr><td data-label="When">{}</td><td data-label="Job">{}</td><td data-label="Outcome"><span class="badge {o}">{o}</span></td><td data-label="Detail">{}</td></tr>"#,
            time_tag(e.at, now),
            esc(&e.job),
            esc(&e.message),
        );
    }
    h.push_str("</tbody></table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_like_a_person_wrote_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(350 * 1024 * 1024), "350 MiB");
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(2_500), "2.5 s");
        assert_eq!(duration_ms(200_000), "3 min 20 s");
        assert_eq!(duration_ms(900_000), "15 min");
        assert_eq!(duration_ms(7_500_000), "2 h 5 min");
        assert_eq!(coarse(361_000), "6 min");
        assert_eq!(coarse(7_530_000), "2 h 5 min");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
