//! Drawings made on the server as SVG: the layer graph of a run (parents left of children, one
//! lane per job) and the small bar charts. Every label goes through `maud`'s escaping.

use std::collections::{HashMap, HashSet};

use maud::{Markup, html};

/// One layer to draw.
#[derive(Debug, Clone)]
pub(crate) struct LayerNode {
    pub id: String,
    pub job: String,
    pub parents: Vec<String>,
    /// Second line of the label.
    pub detail: String,
    /// Part of a clash an attach refuses.
    pub clash: bool,
    /// Applied by the attach shown (all layers unless `--from` narrows it).
    pub selected: bool,
}

/// Where a layer is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Place {
    /// Column: the longest chain of parents above it.
    pub rank: usize,
    /// Row: its job's lane, and a second row of that lane when two of its layers share a rank.
    pub row: usize,
}

/// The graph laid out: one place per node (same order), the edges as node indexes
/// (parent, child), and each job's lane as (job, first row, rows).
#[derive(Debug, Clone)]
pub(crate) struct GraphLayout {
    pub places: Vec<Place>,
    pub edges: Vec<(usize, usize)>,
    pub lanes: Vec<(String, usize, usize)>,
}

/// Lays out `nodes`, given parents before children (as an attach orders them; layers a
/// damaged store holds in a cycle come last and are drawn where their known parents allow).
pub(crate) fn layout(nodes: &[LayerNode]) -> GraphLayout {
    let index: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut rank: Vec<Option<usize>> = vec![None; nodes.len()];
    let mut edges = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut r = 0;
        let mut seen = HashSet::new();
        for p in &n.parents {
            let Some(&pi) = index.get(p.as_str()) else {
                continue;
            };
            if pi == i || !seen.insert(pi) {
                continue;
            }
            edges.push((pi, i));
            if let Some(pr) = rank[pi] {
                r = r.max(pr + 1);
            }
        }
        rank[i] = Some(r);
    }
    // Lanes by job, in order of each job's first layer; rows within a lane as ranks collide.
    let mut jobs: Vec<&str> = Vec::new();
    let mut taken: HashMap<&str, Vec<HashSet<usize>>> = HashMap::new();
    let mut sub: Vec<usize> = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let r = rank[i].unwrap_or(0);
        if !jobs.contains(&n.job.as_str()) {
            jobs.push(&n.job);
        }
        let rows = taken.entry(&n.job).or_default();
        let row = match rows.iter().position(|used| !used.contains(&r)) {
            Some(row) => row,
            None => {
                rows.push(HashSet::new());
                rows.len() - 1
            }
        };
        rows[row].insert(r);
        sub.push(row);
    }
    let mut lanes = Vec::new();
    let mut first_row: HashMap<&str, usize> = HashMap::new();
    let mut next = 0;
    for job in &jobs {
        let rows = taken.get(job).map_or(1, Vec::len);
        first_row.insert(job, next);
        lanes.push((job.to_string(), next, rows));
        next += rows;
    }
    let places = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Place {
            rank: rank[i].unwrap_or(0),
            row: first_row[n.job.as_str()] + sub[i],
        })
        .collect();
    GraphLayout {
        places,
        edges,
        lanes,
    }
}

const NODE_W: usize = 190;
const NODE_H: usize = 46;
const GAP_X: usize = 60;
const GAP_Y: usize = 18;
const LABEL_W: usize = 130;
const PAD: usize = 12;

fn xy(p: Place) -> (usize, usize) {
    (
        PAD + LABEL_W + p.rank * (NODE_W + GAP_X),
        PAD + p.row * (NODE_H + GAP_Y),
    )
}

/// Cuts a label to `n` characters.
fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n - 1).collect();
        out.push('…');
        out
    }
}

/// The SVG of a run's layer graph.
pub(crate) fn layer_svg(nodes: &[LayerNode]) -> Markup {
    let g = layout(nodes);
    let ranks = g.places.iter().map(|p| p.rank + 1).max().unwrap_or(1);
    let rows = g.lanes.iter().map(|l| l.1 + l.2).max().unwrap_or(1);
    let width = PAD * 2 + LABEL_W + ranks * (NODE_W + GAP_X) - GAP_X;
    let height = PAD * 2 + rows * (NODE_H + GAP_Y) - GAP_Y;
    html! {
        svg.graph #layer-graph xmlns="http://www.w3.org/2000/svg" width=(width) height=(height)
            viewBox=(format!("0 0 {width} {height}")) role="img" aria-label="layer graph: parents to children, one lane per job" {
            defs {
                marker #arrow viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse" {
                    path d="M 0 0 L 10 5 L 0 10 z" fill="#56606b" {}
                }
            }
            @for (i, (job, first, n)) in g.lanes.iter().enumerate() {
                @let y = PAD + first * (NODE_H + GAP_Y) - GAP_Y / 2;
                @let h = n * (NODE_H + GAP_Y);
                g.lane data-job=(job) {
                    rect x="0" y=(y) width=(width) height=(h) fill=(if i % 2 == 0 { "#f4f6f8" } else { "#ffffff" }) {}
                    text.lane-label x=(PAD) y=(y + h / 2 + 4) font-size="13" fill="#333" { (cut(job, 16)) }
                }
            }
            @for (p, c) in &g.edges {
                @let (px, py) = xy(g.places[*p]);
                @let (cx, cy) = xy(g.places[*c]);
                @let (x1, y1, x2, y2) = (px + NODE_W, py + NODE_H / 2, cx, cy + NODE_H / 2);
                @let mid = (x1 + x2) / 2;
                path.edge data-edge=(format!("{}->{}", nodes[*p].id, nodes[*c].id))
                    d=(format!("M {x1} {y1} C {mid} {y1}, {mid} {y2}, {x2} {y2}"))
                    fill="none" stroke="#56606b" stroke-width="1.5" marker-end="url(#arrow)" {}
            }
            @for (i, n) in nodes.iter().enumerate() {
                @let (x, y) = xy(g.places[i]);
                a href=(format!("#layer-{}", n.id)) {
                    g.node.clash[n.clash].dim[!n.selected] data-layer=(n.id) data-job=(n.job) {
                        title { "layer " (n.id) " of job " (n.job) }
                        rect x=(x) y=(y) width=(NODE_W) height=(NODE_H) rx="6"
                            fill=(if !n.selected { "#eceff1" } else if n.clash { "#fdecea" } else { "#e8f1fb" })
                            stroke=(if n.clash { "#c62828" } else { "#1f6fb2" })
                            stroke-width=(if n.clash { "2.5" } else { "1.2" }) {}
                        text x=(x + 8) y=(y + 19) font-size="13" font-weight="600" fill="#111" { (cut(&n.job, 24)) }
                        text x=(x + 8) y=(y + 36) font-size="11" fill="#444" { (cut(&n.detail, 30)) }
                    }
                }
            }
        }
    }
}

/// A vertical bar chart of labelled values (one bar each), with each value on hover.
pub(crate) fn bar_chart(values: &[(String, u64)], id: &str) -> Markup {
    let max = values.iter().map(|v| v.1).max().unwrap_or(0).max(1);
    let bar = 14usize;
    let gap = 4usize;
    let h = 120usize;
    let width = values.len().max(1) * (bar + gap) + 64;
    html! {
        svg.chart #(id) xmlns="http://www.w3.org/2000/svg" width=(width) height=(h + 30)
            viewBox=(format!("0 0 {width} {}", h + 30)) role="img" {
            text x="0" y="10" font-size="10" fill="#666" { (crate::html::size(max)) }
            line x1="0" y1=(h) x2=(width) y2=(h) stroke="#bbb" {}
            @for (i, (label, v)) in values.iter().enumerate() {
                @let bh = ((*v as f64 / max as f64) * (h - 16) as f64).round() as usize;
                @let x = 36 + i * (bar + gap);
                g.bar data-label=(label) data-value=(v) {
                    title { (label) ": " (crate::html::size(*v)) }
                    rect x=(x) y=(h - bh) width=(bar) height=(bh.max(if *v > 0 { 1 } else { 0 })) fill="#1f6fb2" {}
                    @if (i % 7 == 0 && i + 4 < values.len()) || i + 1 == values.len() {
                        text x=(x) y=(h + 14) font-size="9" fill="#666" { (label) }
                    }
                }
            }
        }
    }
}

/// A horizontal bar for a table cell: `value` of `max`.
pub(crate) fn hbar(value: u64, max: u64) -> Markup {
    let w = ((value as f64 / max.max(1) as f64) * 200.0).round() as u64;
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width="200" height="12" viewBox="0 0 200 12" {
            rect x="0" y="1" width=(w.max(1)) height="10" fill="#1f6fb2" {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, job: &str, parents: &[&str]) -> LayerNode {
        LayerNode {
            id: id.into(),
            job: job.into(),
            parents: parents.iter().map(|p| p.to_string()).collect(),
            detail: String::new(),
            clash: false,
            selected: true,
        }
    }

    #[test]
    fn parents_are_drawn_left_of_their_children_with_one_edge_each() {
        let nodes = [
            node("1", "checkout", &[]),
            node("2", "build", &["1"]),
            node("3", "docs", &["1"]),
            node("4", "package", &["2", "3", "1", "gone"]),
        ];
        let g = layout(&nodes);
        assert_eq!(g.edges.len(), 5, "unknown parents draw no edge");
        for (p, c) in &g.edges {
            assert!(g.places[*p].rank < g.places[*c].rank, "{p} -> {c}");
        }
        assert_eq!(g.places[3].rank, 2, "the longest chain decides the column");
    }

    #[test]
    fn each_job_has_a_lane_and_no_two_layers_share_a_place() {
        let nodes = [
            node("1", "build", &[]),
            node("2", "build", &[]),
            node("3", "test", &["1"]),
            node("4", "build", &["1"]),
        ];
        let g = layout(&nodes);
        let mut seen = HashSet::new();
        for p in &g.places {
            assert!(seen.insert((p.rank, p.row)), "{p:?} drawn twice");
        }
        let lanes: Vec<&str> = g.lanes.iter().map(|l| l.0.as_str()).collect();
        assert_eq!(lanes, ["build", "test"]);
        assert_eq!(g.lanes[0].2, 2, "two build layers at rank 0 need two rows");
        assert!(g.places[2].row >= 2, "test's lane is below build's");
    }

    #[test]
    fn a_cycle_in_a_damaged_store_still_draws_every_layer() {
        let nodes = [node("a", "x", &["b"]), node("b", "y", &["a"])];
        let g = layout(&nodes);
        assert_eq!(g.places.len(), 2);
        assert_eq!(g.edges.len(), 2);
    }

    #[test]
    fn labels_in_the_svg_are_escaped() {
        let mut n = node("1", "<script>alert(1)</script>", &[]);
        n.detail = "\"><img src=x onerror=alert(1)>".into();
        let svg = layer_svg(&[n]).into_string();
        assert!(!svg.contains("<script>"), "{svg}");
        assert!(!svg.contains("<img"), "{svg}");
        assert!(svg.contains("&lt;script&gt;"), "{svg}");
    }
}
