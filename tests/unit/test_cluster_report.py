# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster report: slot ranges to scale, zone colours, uncovered slots, escaping, determinism, the file write."""

from __future__ import annotations

import os
import random
import re
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings, strategies as st

from ansible_collections.hashslot.redis.plugins.module_utils.cluster import describe_cluster
from ansible_collections.hashslot.redis.plugins.module_utils.cluster_report import (
    BAND_WIDTH, FAILED_COLOR, LEFT, NO_ZONE_COLOR, SVG_NAMESPACE, UNCOVERED_COLOR, ZONE_PALETTE, render_cluster_report, render_html,
    render_svg, slot_x,
)
from ansible_collections.hashslot.redis.plugins.module_utils.module_support import write_file_if_changed
from ansible_collections.hashslot.redis.plugins.module_utils.topology import SLOT_COUNT, ClusterView

SVG = f'{{{SVG_NAMESPACE}}}'
ID_A = 'e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca'
ID_B = '67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1'
ID_C = '292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f'
ID_D = '6ec23923021cf3ffec47632106199cb7f496ce01'
ID_E = '824fe116063bc5fcf9f4ffd895bc17aee7731ac3'

# A (zone a) owns half the slots, B (zone b) a quarter and a single slot, 12288-16382 and 16383 have no owner;
# D replicates A from zone b, E replicates B from zone a and is flagged fail, C is a master without slots.
NODES = f"""\
{ID_A} 10.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-8191
{ID_B} 10.0.0.2:7000@17000 master,fail? - 0 1795318378623 2 connected 8192-12287 16383
{ID_C} 10.0.0.3:7000@17000 master - 0 1795318378623 3 connected
{ID_D} 10.0.0.4:7000@17000 slave {ID_A} 0 1795318379626 1 connected
{ID_E} 10.0.0.5:7000@17000 slave,fail {ID_B} 0 1795318379626 2 disconnected
"""
ZONES = {'10.0.0.1:7000': 'a', '10.0.0.2:7000': 'b', '10.0.0.4:7000': 'b', '10.0.0.5:7000': 'a'}
PROBLEMS = [
    dict(kind='uncovered_slots', node='10.0.0.1:7000', detail='4095 slot(s) have no owner: 12288-16382'),
    dict(kind='node_failed', node='10.0.0.5:7000', detail='flagged fail by 4 node(s)'),
]


def cluster_result(nodes_text: str = NODES, zones=None, problems=None, cluster_state: str = 'fail'):
    """What redis_cluster_info returns for this CLUSTER NODES output (the parts the report reads)."""
    view = ClusterView.parse('10.0.0.1:7000', nodes_text)
    return dict(cluster_state=cluster_state, nodes=describe_cluster(view, ZONES if zones is None else zones),
                problems=list(PROBLEMS if problems is None else problems))


def parse_svg(document: str) -> ET.Element:
    root = ET.fromstring(document.encode('utf-8'))
    assert root.tag == f'{SVG}svg'
    return root


def rects(root: ET.Element, css: str):
    return [rect for rect in root.iter(f'{SVG}rect') if rect.get('class') == css]


def all_text(root: ET.Element) -> str:
    return '\n'.join(''.join(element.itertext()) for element in root.iter(f'{SVG}text'))


def test_slot_ranges_are_drawn_to_scale():
    root = parse_svg(render_svg(cluster_result()))
    drawn = {rect.find(f'{SVG}title').text: (float(rect.get('x')), float(rect.get('width'))) for rect in rects(root, 'slots')}
    assert drawn == {
        '10.0.0.1:7000 (zone a): 0-8191': (LEFT, BAND_WIDTH / 2),
        '10.0.0.2:7000 (zone b): 8192-12287': (LEFT + BAND_WIDTH / 2, BAND_WIDTH / 4),
        '10.0.0.2:7000 (zone b): 16383': (LEFT + BAND_WIDTH * 16383 / 16384, BAND_WIDTH / 16384),
    }
    text = all_text(root)
    assert 'master 10.0.0.1:7000  id e7d1eecc  zone a  8192 slots: 0-8191' in text
    assert 'master 10.0.0.3:7000  id 292f8b36  no zone  0 slots' in text


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=SLOT_COUNT - 1), max_size=12, unique=True).map(sorted), st.data())
def test_every_slot_is_drawn_once_across_masters_and_uncovered(cuts, data):
    """However the slots are split among masters and gaps, the drawn pieces tile the band exactly."""
    edges = [0] + cuts + [SLOT_COUNT]
    nodes = []
    for index, (start, end) in enumerate(zip(edges, edges[1:])):
        if data.draw(st.booleans(), label=f'piece {index} owned'):
            nodes.append(dict(id=f'{index:040x}', address=f'10.0.0.{index}:7000', role='master', slots=[f'{start}-{end - 1}'], slot_count=end - start,
                              flags=['master'], link_state='connected', zone='abc'[index % 3]))
    root = parse_svg(render_svg(dict(cluster_state='ok', nodes=nodes, problems=[])))
    owned = sorted(float(rect.get('x')) for rect in rects(root, 'slots'))
    assert owned == [slot_x(int(node['slots'][0].split('-')[0])) for node in nodes]
    pieces = sorted((float(rect.get('x')), float(rect.get('width'))) for rect in rects(root, 'slots') + rects(root, 'uncovered'))
    assert sum(width for dummy, width in pieces) == pytest.approx(BAND_WIDTH)
    position = LEFT
    for x, width in pieces:
        assert x == pytest.approx(position)
        position = x + width


def test_zone_colours_and_legend():
    root = parse_svg(render_svg(cluster_result()))
    fills = {rect.find(f'{SVG}title').text.split(' ')[0]: rect.get('fill') for rect in rects(root, 'slots')}
    assert fills == {'10.0.0.1:7000': ZONE_PALETTE[0], '10.0.0.2:7000': ZONE_PALETTE[1]}
    legend = {}
    elements = list(root)
    for swatch, label in zip(elements, elements[1:]):
        if swatch.tag == f'{SVG}rect' and label.tag == f'{SVG}text' and swatch.get('width') == '12':
            legend[''.join(label.itertext())] = swatch.get('fill')
    assert legend['zone a'] == ZONE_PALETTE[0] and legend['zone b'] == ZONE_PALETTE[1]
    assert legend['no zone'] == NO_ZONE_COLOR and legend['uncovered slots'] == UNCOVERED_COLOR
    # Each replica's line starts with a swatch of its own zone's colour: D is in zone b, E in zone a.
    swatches = [(swatch.get('fill'), ''.join(line.itertext())) for swatch, line in zip(elements, elements[1:])
                if swatch.tag == f'{SVG}rect' and swatch.get('width') == '10']
    assert [(fill, line.split()[1]) for fill, line in swatches] == [(ZONE_PALETTE[1], '10.0.0.4:7000'), (ZONE_PALETTE[0], '10.0.0.5:7000')]


def test_a_zone_keeps_its_colour_in_a_larger_palette_order():
    zones = {f'10.0.0.{index}:7000': name for index, name in enumerate('edcba', start=1)}
    nodes = [dict(id=f'{index:040x}', address=f'10.0.0.{index}:7000', role='master', slots=[f'{index * 1000}-{index * 1000 + 999}'],
                  flags=['master'], link_state='connected', zone=zones[f'10.0.0.{index}:7000']) for index in range(1, 6)]
    root = parse_svg(render_svg(dict(cluster_state='ok', nodes=nodes, problems=[])))
    fills = {rect.find(f'{SVG}title').text.split(' ')[0]: rect.get('fill') for rect in rects(root, 'slots')}
    assert fills['10.0.0.5:7000'] == ZONE_PALETTE[0] and fills['10.0.0.1:7000'] == ZONE_PALETTE[4]


def test_uncovered_slots_on_the_coverage_row():
    root = parse_svg(render_svg(cluster_result()))
    uncovered = [(float(rect.get('x')), float(rect.get('width')), rect.get('fill')) for rect in rects(root, 'uncovered')]
    assert uncovered == [(slot_x(12288), BAND_WIDTH * 4095 / 16384, UNCOVERED_COLOR)]
    assert 'coverage  12289 of 16384 slots owned  uncovered: 12288-16382' in all_text(root)

    full = dict(cluster_state='ok', nodes=[dict(id=ID_A, address='10.0.0.1:7000', role='master', slots=['0-16383'], flags=['master'],
                                                link_state='connected')], problems=[])
    root = parse_svg(render_svg(full))
    assert not rects(root, 'uncovered') and 'coverage  16384 of 16384 slots owned' in all_text(root)


def test_slots_of_a_failed_master_are_not_served():
    """A master flagged fail still owns its slots, but nobody serves them until a replica takes over: the coverage row
    says so and draws them red; a master one node only suspects (PFAIL) may still serve its slots."""
    root = parse_svg(render_svg(cluster_result(NODES.replace('master,fail?', 'master,fail'))))
    unserved = [(float(rect.get('x')), float(rect.get('width')), rect.get('fill')) for rect in rects(root, 'unserved')]
    assert unserved == [(slot_x(8192), BAND_WIDTH * 4096 / 16384, UNCOVERED_COLOR), (slot_x(16383), BAND_WIDTH / 16384, UNCOVERED_COLOR)]
    text = all_text(root)
    assert 'coverage  12289 of 16384 slots owned  4097 by a failed master  uncovered: 12288-16382' in text
    assert '\n50.0%\n' in f'\n{text}\n', 'the coverage row counts the slots served: 16384 - 4095 uncovered - 4097 on B'

    suspected = parse_svg(render_svg(cluster_result()))
    assert not rects(suspected, 'unserved') and 'by a failed master' not in all_text(suspected)


def test_failed_nodes_and_problems_are_marked():
    document = render_svg(cluster_result())
    root = parse_svg(document)
    text = all_text(root)
    assert 'master 10.0.0.2:7000' in text and '[PFAIL]' in text
    assert re.search(r'replica 10\.0\.0\.5:7000 .*link disconnected  \[FAIL\]', text)
    assert document.count(f'stroke="{FAILED_COLOR}" stroke-width="2" stroke-dasharray="6 3"') == 1
    assert 'cluster_state fail' in text
    assert '2 problem(s)' in text and 'node_failed  10.0.0.5:7000  flagged fail by 4 node(s)' in text
    assert 'no replica' in text  # C, the master without slots nor replica


def test_hostile_text_is_escaped():
    hostile = '<script>alert("x")</script>&amp;\x00\x1b'
    result = cluster_result(zones={'10.0.0.1:7000': hostile, '10.0.0.4:7000': 'b" onload="alert(1)'},
                            problems=[dict(kind='node_failed', node='<b>', detail='</text><script>evil()</script>')])
    for document in (render_svg(result), render_html(result)):
        assert '<script' not in document and 'onload="' not in document and '<b>' not in document
        assert '&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;amp;' in document
        root = ET.fromstring(document.encode('utf-8'))
        assert any('<script>alert("x")</script>&amp;' in ''.join(element.itertext()) for element in root.iter())


def test_same_state_same_bytes_whatever_the_order():
    result = cluster_result()
    shuffled = dict(result, nodes=list(reversed(result['nodes'])), problems=list(reversed(result['problems'])))
    random.Random(7).shuffle(shuffled['nodes'])
    for report_format in ('html', 'svg'):
        first = render_cluster_report(result, report_format)
        assert render_cluster_report(result, report_format) == first
        assert render_cluster_report(shuffled, report_format) == first
    # What changes between runs of the module on an unchanged cluster is not drawn.
    moving = dict(result, duration=1.5, nodes=[dict(node, replication_offset=index * 1000) for index, node in enumerate(result['nodes'])])
    assert render_html(moving) == render_html(result)


def test_html_is_self_contained():
    document = render_html(cluster_result())
    assert document.startswith('<!DOCTYPE html>\n<html lang="en">')
    assert set(re.findall(r'https?://[^\s"\'<>]+', document)) == {SVG_NAMESPACE}
    assert not re.search(r'<script|javascript:|\son[a-z]+=|href=|src=|url\(|@import', document, re.IGNORECASE)
    root = ET.fromstring(document.encode('utf-8'))
    svg = root.find(f'body/{SVG}svg')
    assert svg is not None and svg.find(f'{SVG}title').text == 'Cluster slot map: cluster_state fail'
    cells = [[''.join(cell.itertext()) for cell in row] for row in root.iter('tr')]
    assert cells[1:] == [['node_failed', '10.0.0.5:7000', 'flagged fail by 4 node(s)'],
                         ['uncovered_slots', '10.0.0.1:7000', '4095 slot(s) have no owner: 12288-16382']]


def test_healthy_cluster_says_so():
    document = render_html(cluster_result(problems=[], cluster_state='ok'))
    assert '<h2 class="good">No problems found</h2>' in document and '<table>' not in document


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="report format 'pdf' is not one of html, svg"):
        render_cluster_report(cluster_result(), 'pdf')


def test_write_file_if_changed(tmp_path):
    path = str(tmp_path / 'report.html')
    previous_umask = os.umask(0o077)
    try:
        assert write_file_if_changed(path, 'one\u2026', check_mode=True) is True
        assert not os.path.exists(path)
        assert write_file_if_changed(path, 'one\u2026') is True
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
        inode = os.stat(path).st_ino
        assert write_file_if_changed(path, 'one\u2026') is False
        assert write_file_if_changed(path, 'one\u2026', check_mode=True) is False
        assert os.stat(path).st_ino == inode
        assert write_file_if_changed(path, 'two', check_mode=True) is True
        assert open(path, encoding='utf-8').read() == 'one\u2026'
        assert write_file_if_changed(path, 'two') is True
        assert open(path, encoding='utf-8').read() == 'two'
    finally:
        os.umask(previous_umask)
    assert sorted(os.listdir(tmp_path)) == ['report.html']
    with pytest.raises(FileNotFoundError):
        write_file_if_changed(str(tmp_path / 'missing' / 'report.html'), 'x')


def test_renderer_imports_without_redis_py():
    """The renderer is pure: it must load where redis-py is missing (the module reports that itself)."""
    code = ('import sys; sys.modules["redis"] = None\n'
            'from ansible_collections.hashslot.redis.plugins.module_utils import cluster_report\n'
            'assert "redis" not in [name for name, module in sys.modules.items() if module is not None and name.split(".")[0] == "redis"]\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path for path in sys.path if path))
    completed = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
