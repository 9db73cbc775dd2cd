# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A picture of the cluster's slot map per master and zone, as a self-contained SVG or HTML document.

The input is what redis_cluster_info returns (cluster_state, nodes, problems). The output depends on nothing
else: no clock, no random ids, every list sorted, so the same cluster state renders the same bytes and a
report written again is unchanged.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.topology import SLOT_COUNT, SlotRange, format_ranges, parse_slot_ranges, slots_to_ranges

REPORT_FORMATS = ('html', 'svg')

SVG_NAMESPACE = 'http://www.w3.org/2000/svg'

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), red kept for uncovered slots.
ZONE_PALETTE = ('#0072B2', '#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#F0E442', '#8C6D31', '#7F7F7F')
NO_ZONE_COLOR = '#BDBDBD'
UNCOVERED_COLOR = '#D62728'
COVERED_COLOR = '#A1D99B'
BAND_BACKGROUND = '#F2F2F2'
FAILED_COLOR = '#C00000'

# 1024 px for 16384 slots: 16 slots a pixel, so every range edge falls on a 1/16 px boundary and prints exactly.
BAND_WIDTH = 1024
BAND_HEIGHT = 18
LEFT = 24
RIGHT_COLUMN = 140
WIDTH = LEFT + BAND_WIDTH + RIGHT_COLUMN
LINE = 16
CHAR_WIDTH = 7  # rough width of a 12 px sans-serif character, to lay out the legend without measuring text
LABEL_LIMIT = 48  # longest zone name or address shown in full; a longer one is cut (the range's tooltip has it whole)
PROBLEM_LIMIT = 160
RANGES_SHOWN = 6

# Characters XML 1.0 cannot hold at all, even escaped; a zone name is free text from the inventory.
_NOT_XML = re.compile('[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')

_STYLE = (
    'text{font-family:sans-serif;font-size:12px;fill:#222}'
    '.title{font-size:16px;font-weight:bold}'
    '.muted{fill:#666}'
    '.bad{fill:#C00000;font-weight:bold}'
    '.good{fill:#2E7D32;font-weight:bold}'
    '.mono{font-family:monospace}'
)

_HTML_STYLE = (
    'body{font-family:sans-serif;margin:16px;color:#222;background:#fff}'
    'h1{font-size:20px}h2{font-size:16px;margin-top:20px}'
    '.bad{color:#C00000;font-weight:bold}.good{color:#2E7D32;font-weight:bold}'
    'table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}'
    'code{font-family:monospace}'
)


@dataclass
class ReplicaRow:
    address: str
    node_id: str
    zone: Optional[str]
    link_state: str
    master_link_status: Optional[str]
    marks: Tuple[str, ...]


@dataclass
class MasterRow:
    address: str
    node_id: str
    zone: Optional[str]
    slots: List[SlotRange]
    marks: Tuple[str, ...]
    replicas: List[ReplicaRow] = field(default_factory=list)

    @property
    def slot_count(self) -> int:
        return sum(end - start + 1 for start, end in self.slots)


@dataclass
class ReportModel:
    """The cluster as the picture shows it, sorted once so that rendering is a plain walk."""
    cluster_state: str
    masters: List[MasterRow]
    orphans: List[ReplicaRow]
    uncovered: List[SlotRange]
    unserved: List[SlotRange]
    zones: List[Optional[str]]
    problems: List[Dict[str, str]]


def failure_marks(flags: Sequence[str]) -> Tuple[str, ...]:
    """'FAIL' and/or 'PFAIL' for a node's flags, as the picture labels it."""
    marks = []
    if 'fail' in flags:
        marks.append('FAIL')
    if 'fail?' in flags:
        marks.append('PFAIL')
    return tuple(marks)


def build_model(cluster: Dict) -> ReportModel:
    """redis_cluster_info's result (cluster_state, nodes, problems) -> the rows of the picture."""
    nodes = list(cluster.get('nodes') or [])
    masters: Dict[str, MasterRow] = {}
    for node in nodes:
        if node.get('role') != 'master':
            continue
        masters[node['id']] = MasterRow(address=str(node['address']), node_id=str(node['id']), zone=_zone(node),
                                        slots=parse_slot_ranges(node.get('slots') or []), marks=failure_marks(node.get('flags') or ()))
    orphans: List[ReplicaRow] = []
    for node in nodes:
        if node.get('role') == 'master':
            continue
        replica = ReplicaRow(address=str(node['address']), node_id=str(node['id']), zone=_zone(node),
                             link_state=str(node.get('link_state') or ''), master_link_status=node.get('master_link_status'),
                             marks=failure_marks(node.get('flags') or ()))
        master = masters.get(node.get('master_id') or '')
        (master.replicas if master else orphans).append(replica)
    owned = set()
    unserved = set()
    for master in masters.values():
        for start, end in master.slots:
            owned.update(range(start, end + 1))
            # Slots of a master the cluster flagged fail go unserved until a replica takes them over (PFAIL is one
            # node's suspicion: they may still be served).
            if 'FAIL' in master.marks:
                unserved.update(range(start, end + 1))
    rows = sorted(masters.values(), key=lambda row: (row.slots[0][0] if row.slots else SLOT_COUNT, row.address, row.node_id))
    for row in rows:
        row.replicas.sort(key=lambda replica: (replica.address, replica.node_id))
    orphans.sort(key=lambda replica: (replica.address, replica.node_id))
    zones = {row.zone for row in rows} | {replica.zone for row in rows for replica in row.replicas} | {replica.zone for replica in orphans}
    problems = sorted((dict(kind=str(problem.get('kind', '')), node=str(problem.get('node', '')), detail=str(problem.get('detail', '')))
                       for problem in cluster.get('problems') or []), key=lambda problem: (problem['kind'], problem['node'], problem['detail']))
    return ReportModel(
        cluster_state=str(cluster.get('cluster_state') or 'unknown'),
        masters=rows,
        orphans=orphans,
        uncovered=slots_to_ranges(set(range(SLOT_COUNT)) - owned),
        unserved=slots_to_ranges(unserved),
        zones=sorted(zones, key=lambda zone: (zone is None, zone or '')),
        problems=problems,
    )


def _zone(node: Dict) -> Optional[str]:
    zone = node.get('zone')
    return str(zone) if zone not in (None, '') else None


def zone_colors(zones: Sequence[Optional[str]]) -> Dict[Optional[str], str]:
    """A colour per zone in sorted order (the palette repeats past eight zones); nodes without a zone are grey."""
    colors: Dict[Optional[str], str] = {None: NO_ZONE_COLOR}
    named = sorted(zone for zone in zones if zone is not None)
    for index, zone in enumerate(named):
        colors[zone] = ZONE_PALETTE[index % len(ZONE_PALETTE)]
    return colors


def slot_x(slot: int) -> float:
    """Left edge of `slot` on a band (slot 16384 is the band's right end)."""
    return LEFT + slot * BAND_WIDTH / SLOT_COUNT


def range_geometry(slot_range: SlotRange) -> Tuple[float, float]:
    """(x, width) of an inclusive slot range, to scale."""
    start, end = slot_range
    return slot_x(start), (end - start + 1) * BAND_WIDTH / SLOT_COUNT


def escape(text: object) -> str:
    """Text safe inside an XML/HTML element or a double-quoted attribute."""
    return html.escape(_NOT_XML.sub('\ufffd', str(text)), quote=True)


def _number(value: float) -> str:
    text = f'{value:.4f}'.rstrip('0').rstrip('.')
    return text or '0'


def _zone_label(zone: Optional[str]) -> str:
    return f'zone {zone}' if zone is not None else 'no zone'


def _percent(count: int) -> str:
    return f'{count * 100 / SLOT_COUNT:.1f}%'


def _count(ranges: Sequence[SlotRange]) -> int:
    return sum(end - start + 1 for start, end in ranges)


def _ranges_label(ranges: Sequence[SlotRange]) -> str:
    shown = format_ranges(ranges[:RANGES_SHOWN])
    if len(ranges) > RANGES_SHOWN:
        shown.append(f'and {len(ranges) - RANGES_SHOWN} more ranges')
    return ', '.join(shown)


class _Svg:
    """Collects SVG elements line by line; every text goes through escape()."""

    def __init__(self) -> None:
        self.lines: List[str] = []

    def rect(self, x: float, y: float, width: float, height: float, fill: str, extra: str = '', title: Optional[str] = None) -> None:
        attributes = f'x="{_number(x)}" y="{_number(y)}" width="{_number(width)}" height="{_number(height)}" fill="{fill}"{extra}'
        if title is None:
            self.lines.append(f'<rect {attributes}/>')
        else:
            self.lines.append(f'<rect {attributes}><title>{escape(title)}</title></rect>')

    def text(self, x: float, y: float, parts: Sequence[Tuple[str, str]], anchor: str = 'start') -> None:
        """One line of text from (css class or '', text) parts."""
        spans = ''.join(f'<tspan class="{css}">{escape(content)}</tspan>' if css else escape(content) for css, content in parts if content)
        extra = f' text-anchor="{anchor}"' if anchor != 'start' else ''
        self.lines.append(f'<text x="{_number(x)}" y="{_number(y)}"{extra} xml:space="preserve">{spans}</text>')


def _marks_parts(marks: Sequence[str]) -> List[Tuple[str, str]]:
    return [('bad', f'  [{mark}]') for mark in marks]


def _replica_line(svg: _Svg, replica: ReplicaRow, colors: Dict[Optional[str], str], y: float) -> None:
    """A swatch of the replica's zone colour, then its address, zone and link state."""
    svg.rect(LEFT + 12, y - 10, 10, 10, colors[replica.zone])
    parts = [('muted', 'replica '), ('', _cut(replica.address)), ('muted', f'  id {replica.node_id[:8]}  '), ('', _cut(_zone_label(replica.zone)))]
    link = f'  link {replica.link_state or "unknown"}'
    parts.append(('' if replica.link_state in ('connected', '') else 'bad', link))
    if replica.master_link_status:
        parts.append(('' if replica.master_link_status == 'up' else 'bad', f'  replication {replica.master_link_status}'))
    svg.text(LEFT + 28, y, parts + _marks_parts(replica.marks))


def _cut(text: str, limit: int = LABEL_LIMIT) -> str:
    """Long free text (a zone name, a problem's detail) cut so that it cannot push the picture apart."""
    return text if len(text) <= limit else text[:limit - 1] + '\u2026'


def _legend(svg: _Svg, model: ReportModel, colors: Dict[Optional[str], str], y: float) -> float:
    """Swatches for every zone, uncovered slots and a failed node, wrapped to the picture's width; returns the next y."""
    entries = [(colors[zone], _cut(_zone_label(zone)), '') for zone in model.zones]
    entries.append((UNCOVERED_COLOR, 'uncovered slots', ''))
    entries.append(('none', 'failed node (FAIL / PFAIL)', f' stroke="{FAILED_COLOR}" stroke-width="2" stroke-dasharray="3 2"'))
    x = LEFT
    for color, label, extra in entries:
        width = 18 + len(label) * CHAR_WIDTH + 16
        if x > LEFT and x + width > WIDTH - 8:
            x = LEFT
            y += LINE + 2
        svg.rect(x, y - 11, 12, 12, color, extra)
        svg.text(x + 18, y, [('', label)])
        x += width
    return y + LINE + 8


def _axis(svg: _Svg, y: float) -> None:
    for slot in (0, 4096, 8192, 12288, SLOT_COUNT):
        x = slot_x(slot)
        label = str(min(slot, SLOT_COUNT - 1))
        svg.lines.append(f'<line x1="{_number(x)}" y1="{_number(y + 3)}" x2="{_number(x)}" y2="{_number(y + 8)}" stroke="#888"/>')
        anchor = 'start' if slot == 0 else 'end' if slot == SLOT_COUNT else 'middle'
        svg.text(x, y, [('muted', label)], anchor)


def _band(svg: _Svg, y: float, failed: bool) -> None:
    extra = f' stroke="{FAILED_COLOR}" stroke-width="2" stroke-dasharray="6 3"' if failed else ' stroke="#CCCCCC"'
    svg.rect(LEFT, y, BAND_WIDTH, BAND_HEIGHT, BAND_BACKGROUND, extra)


def svg_element(cluster: Dict, include_problems: bool = True) -> str:
    """The <svg> element alone (for inline use in HTML); see render_svg for a standalone document."""
    model = build_model(cluster)
    colors = zone_colors(model.zones)
    svg = _Svg()
    replicas = sum(len(row.replicas) for row in model.masters) + len(model.orphans)
    owning = len([row for row in model.masters if row.slots])
    state_class = 'good' if model.cluster_state == 'ok' else 'bad'
    y = 28.0
    svg.text(LEFT, y, [('title', 'Cluster slot map'), ('muted', '   cluster_state '), (state_class, model.cluster_state),
                       ('muted', f'   {len(model.masters)} master(s), {owning} with slots, {replicas} replica(s)')])
    y = _legend(svg, model, colors, y + 26)

    _axis(svg, y)
    y += 12
    covered = SLOT_COUNT - _count(model.uncovered)
    served = covered - _count(model.unserved)
    svg.text(LEFT, y + 12, [('', 'coverage  '), ('good' if served == SLOT_COUNT else 'bad', f'{covered} of {SLOT_COUNT} slots owned'),
                            ('bad', f'  {_count(model.unserved)} by a failed master' if model.unserved else ''),
                            ('muted', f'  uncovered: {_ranges_label(model.uncovered)}' if model.uncovered else '')])
    y += 18
    svg.rect(LEFT, y, BAND_WIDTH, BAND_HEIGHT, COVERED_COLOR, ' stroke="#CCCCCC"', title=f'{covered} slots owned, {served} served')
    for slot_range in model.uncovered:
        x, width = range_geometry(slot_range)
        svg.rect(x, y, width, BAND_HEIGHT, UNCOVERED_COLOR, ' class="uncovered"', title=f'uncovered: {format_ranges([slot_range])[0]}')
    # Owned but not served: as red as no owner (Redis calls both uncovered), outlined as the failed node is.
    for slot_range in model.unserved:
        x, width = range_geometry(slot_range)
        svg.rect(x, y, width, BAND_HEIGHT, UNCOVERED_COLOR, f' class="unserved" stroke="{FAILED_COLOR}" stroke-width="2" stroke-dasharray="3 2"',
                 title=f'owned by a failed master: {format_ranges([slot_range])[0]}')
    svg.text(LEFT + BAND_WIDTH + 10, y + 13, [('' if served == SLOT_COUNT else 'bad', _percent(served))])
    y += BAND_HEIGHT + 22

    for row in model.masters:
        failed = bool(row.marks)
        svg.text(LEFT, y, [('', 'master '), ('', _cut(row.address)), ('muted', f'  id {row.node_id[:8]}  '), ('', _cut(_zone_label(row.zone))),
                           ('muted', f'  {row.slot_count} slots'), ('muted', f': {_ranges_label(row.slots)}' if row.slots else '')]
                 + _marks_parts(row.marks))
        y += 6
        _band(svg, y, failed)
        for slot_range in row.slots:
            x, width = range_geometry(slot_range)
            svg.rect(x, y, width, BAND_HEIGHT, colors[row.zone], ' class="slots"',
                     title=f'{row.address} ({_zone_label(row.zone)}): {format_ranges([slot_range])[0]}')
        svg.text(LEFT + BAND_WIDTH + 10, y + 13, [('bad' if failed else '', f'{row.slot_count} ({_percent(row.slot_count)})')])
        y += BAND_HEIGHT + LINE
        if not row.replicas:
            svg.text(LEFT + 12, y, [('bad' if row.slots else 'muted', 'no replica')])
            y += LINE
        for replica in row.replicas:
            _replica_line(svg, replica, colors, y)
            y += LINE
        y += 12

    if model.orphans:
        svg.text(LEFT, y, [('bad', 'replicas of a master the cluster does not list')])
        y += LINE
        for replica in model.orphans:
            _replica_line(svg, replica, colors, y)
            y += LINE
        y += 12

    if include_problems:
        if model.problems:
            svg.text(LEFT, y, [('bad', f'{len(model.problems)} problem(s)')])
        else:
            svg.text(LEFT, y, [('good', 'no problems found')])
        y += LINE + 2
        for problem in model.problems:
            svg.text(LEFT + 12, y, [('bad', problem['kind']), ('', f'  {_cut(problem["node"])}  '), ('muted', _cut(problem['detail'], PROBLEM_LIMIT))])
            y += LINE
        y += 4

    height = int(y) + 8
    header = (f'<svg xmlns="{SVG_NAMESPACE}" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
              f'role="img" aria-label="Cluster slot map, cluster_state {escape(model.cluster_state)}">')
    body = [header, f'<title>Cluster slot map: cluster_state {escape(model.cluster_state)}</title>', f'<style>{_STYLE}</style>',
            f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#FFFFFF"/>']
    return '\n'.join(body + svg.lines + ['</svg>']) + '\n'


def render_svg(cluster: Dict) -> str:
    """A standalone SVG document of the cluster."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + svg_element(cluster)


def render_html(cluster: Dict) -> str:
    """One self-contained HTML page: the SVG inline, the problems as a table; no script, no external resource.

    It is also well-formed XML, so tools (and the tests) can read it with an XML parser.
    """
    model = build_model(cluster)
    state_class = 'good' if model.cluster_state == 'ok' else 'bad'
    lines = [
        '<!DOCTYPE html>',
        '<html lang="en">',
        '<head>',
        '<meta charset="utf-8"/>',
        f'<title>Cluster report: cluster_state {escape(model.cluster_state)}</title>',
        f'<style>{_HTML_STYLE}</style>',
        '</head>',
        '<body>',
        f'<h1>Cluster report: cluster_state <span class="{state_class}">{escape(model.cluster_state)}</span></h1>',
        svg_element(cluster, include_problems=False).rstrip('\n'),
    ]
    if model.problems:
        lines.append(f'<h2 class="bad">{len(model.problems)} problem(s)</h2>')
        lines.append('<table>')
        lines.append('<tr><th>kind</th><th>node</th><th>detail</th></tr>')
        for problem in model.problems:
            lines.append(f'<tr><td><code>{escape(problem["kind"])}</code></td><td><code>{escape(problem["node"])}</code></td>'
                         f'<td>{escape(problem["detail"])}</td></tr>')
        lines.append('</table>')
    else:
        lines.append('<h2 class="good">No problems found</h2>')
    lines += ['</body>', '</html>']
    return '\n'.join(lines) + '\n'


def render_cluster_report(cluster: Dict, report_format: str = 'html') -> str:
    if report_format == 'svg':
        return render_svg(cluster)
    if report_format == 'html':
        return render_html(cluster)
    raise ValueError(f'report format {report_format!r} is not one of {", ".join(REPORT_FORMATS)}')


def _zone_of(node: Dict) -> str:
    return str(node.get('zone') or '-')


def summary_lines(cluster: Dict) -> List[str]:
    """redis_cluster_info's result as the lines a play prints: the state and counts, one line per master (by address:
    zone, server and version, slot ranges, its replicas and their zones), then one line per problem."""
    nodes = list(cluster.get('nodes') or [])
    problems = list(cluster.get('problems') or [])
    lines = [f"cluster_state {cluster.get('cluster_state')}: {cluster.get('masters')} masters, {cluster.get('replicas')} replicas, "
             f"{len(problems)} problem(s)"]
    for master in sorted((node for node in nodes if node.get('role') == 'master'), key=lambda node: str(node['address']).lower()):
        replicas = [f"{replica['address']} (zone {_zone_of(replica)})" for replica in nodes if replica.get('master_id') == master['id']]
        # A node that could not be read has no server or version.
        running = ' '.join(str(part) for part in (master.get('server'), master.get('version')) if part)
        described = f'zone {_zone_of(master)}, {running}' if running else f'zone {_zone_of(master)}'
        lines.append(f"master {master['address']} ({described}) slots {','.join(master.get('slots') or []) or 'none'} <- "
                     f"{', '.join(replicas) or 'no replica'}")
    lines.extend(f"problem {problem.get('kind')} at {problem.get('node')}: {problem.get('detail')}" for problem in problems)
    return lines
