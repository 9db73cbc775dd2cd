"""redis_cluster_info's HTML report looked at in a browser: what a person sees, not the bytes (test_cluster_info.py
reads those). One loopback cluster, three reports written by the module as its states change: healthy, a slot left
open (MIGRATING / IMPORTING), a master killed and flagged fail. Each is opened in headless Chromium (Debian's package,
tools/chromium) in a window of 1280 x 800, and what the page shows is read back: the rendered text, where the text and
the slot bands are laid out, which colour is on screen where. The screenshots are left in tests/output/report/.

The report does not depend on the server build, so it is drawn once, on the matrix's first build (first_build_servers
puts the test in the machine share of make test's pytest lane, the shorter one)."""

from __future__ import annotations

import os
import shutil
import time

from browser import HeadlessChromium, ensure_chromium
from conftest import form_cluster
from playbook import run_module
from servers import raw_command

from ansible_collections.hashslot.redis.plugins.module_utils.cluster_report import FAILED_COLOR

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUTPUT = os.path.join(REPO, 'tests', 'output', 'report')
WINDOW = (1280, 800)
# The colour of a failed node's marks, as the browser's computed style writes it.
FAILED_RED = 'rgb({}, {}, {})'.format(*bytes.fromhex(FAILED_COLOR[1:]))

# What the page shows, measured by the browser: the text shown (innerText), the window's and the document's sizes, the
# SVG's box, each SVG text line's box and colours, each shape's box, each slot range's box, colour and tooltip and
# whether it is on top at its middle, and for each line the colour drawn just left of it: the swatch of a legend entry
# (read at that point, so it is what is on top there).
MEASURE = """(() => {
  const box = (element) => { const r = element.getBoundingClientRect(); return {left: r.left, top: r.top, right: r.right, bottom: r.bottom,
                                                                                 width: r.width, height: r.height}; };
  const svg = document.querySelector('svg');
  const shown = (element) => { const style = getComputedStyle(element); return style.visibility === 'visible' && style.display !== 'none'
                                                                                 && style.opacity !== '0'; };
  const texts = [...svg.querySelectorAll('text')].map((text) => ({
    text: text.textContent, box: box(text), shown: shown(text), fill: getComputedStyle(text).fill,
    spans: [...text.querySelectorAll('tspan')].map((span) => ({text: span.textContent, fill: getComputedStyle(span).fill})),
  }));
  const slots = [...svg.querySelectorAll('rect.slots')].map((rect) => {
    const b = box(rect);
    const top = document.elementFromPoint(b.left + b.width / 2, b.top + b.height / 2);
    return {title: rect.querySelector('title').textContent, box: b, fill: getComputedStyle(rect).fill, shown: shown(rect),
            on_top: top === rect, wide: b.width >= 1};
  });
  const shapes = [...svg.querySelectorAll('rect')].slice(1).map(box);  // the first is the picture's white background
  const unserved = [...svg.querySelectorAll('rect.unserved')].map((rect) => ({box: box(rect), fill: getComputedStyle(rect).fill}));
  const legend = texts.map((text) => { const swatch = document.elementFromPoint(text.box.left - 12, (text.box.top + text.box.bottom) / 2);
                                        return {text: text.text, swatch: swatch && swatch.tagName === 'rect' ? getComputedStyle(swatch).fill : null}; });
  return {text: document.body.innerText, window: {width: innerWidth, height: innerHeight},
          document: {width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight},
          svg: box(svg), texts: texts, shapes: shapes, slots: slots, unserved: unserved, legend: legend};
})()"""


def masters_of(result):
    return sorted((node for node in result['nodes'] if node['role'] == 'master' and node['slots']), key=lambda node: node['address'])


def look_at(browser, page_path, name):
    """The report as the browser shows it, with its screenshot saved for people to look at."""
    os.makedirs(OUTPUT, exist_ok=True)
    shutil.copyfile(page_path, os.path.join(OUTPUT, f'{name}.html'))
    page = browser.open(page_path, *WINDOW)
    seen = page.evaluate(MEASURE)
    page.screenshot(os.path.join(OUTPUT, f'{name}.png'))
    return seen


def overlapping(first, second, slack=1.0):
    return (min(first['right'], second['right']) - max(first['left'], second['left']) > slack
            and min(first['bottom'], second['bottom']) - max(first['top'], second['top']) > slack)


def assert_readable(seen, result, zones):
    """What every report must show, whatever the cluster's state."""
    window, svg = seen['window'], seen['svg']
    # The picture fits the window: no sideways scrolling, and it has a size.
    assert seen['document']['width'] <= window['width'], (seen['document'], window)
    assert svg['width'] > 0 and svg['height'] > 0 and svg['left'] >= 0 and svg['right'] <= window['width'], svg
    # Every line of the picture is shown, inside the picture, and on no other line ...
    for text in seen['texts']:
        assert text['shown'] and text['box']['width'] > 0 and text['box']['height'] > 0, text
        assert svg['left'] <= text['box']['left'] and text['box']['right'] <= svg['right'] and text['box']['bottom'] <= svg['bottom'], (text, svg)
    lines = seen['texts']
    for index, text in enumerate(lines):
        for other in lines[index + 1:]:
            assert not overlapping(text['box'], other['box']), (text['text'], other['text'])
        # ... nor on a band or a swatch.
        assert not [shape for shape in seen['shapes'] if overlapping(text['box'], shape)], text

    shown = seen['text']
    assert f"cluster_state {result['cluster_state']}" in shown.splitlines()[0]
    # Each master: its address, zone and slot ranges as text, and its ranges drawn in its zone's colour, as the
    # legend's swatch for that zone shows it.
    legend = {entry['text']: entry['swatch'] for entry in seen['legend']}
    assert {f'zone {zone}' for zone in set(zones.values())} <= set(legend), legend
    for master in masters_of(result):
        line = next((text for text in lines if text['text'].startswith(f"master {master['address']} ")), None)
        assert line is not None, (master['address'], shown)
        assert f"zone {master['zone']}  {master['slot_count']} slots: {', '.join(master['slots'])}" in line['text'], line['text']
        assert line['text'] in shown
        drawn = [rect for rect in seen['slots'] if rect['title'].startswith(f"{master['address']} ")]
        assert drawn and all(rect['shown'] and rect['box']['height'] > 0 for rect in drawn), drawn
        assert {rect['fill'] for rect in drawn} == {legend[f"zone {master['zone']}"]}, (drawn, legend)
        # To scale: the band is 1024 px for 16384 slots, so the widths add up to the slot count / 16.
        assert abs(sum(rect['box']['width'] for rect in drawn) - master['slot_count'] / 16) < 1, drawn
        assert all(rect['on_top'] for rect in drawn if rect['wide']), drawn
    for problem in result['problems']:
        assert f"{problem['kind']}\t{problem['node']}\t{problem['detail']}" in shown, (problem, shown)


def report(cluster, zones, path):
    """redis_cluster_info's report of the cluster, read from a node that runs."""
    seed = next(node for node in cluster if node.process.poll() is None)
    result = run_module('redis_cluster_info', node=seed.node, zones=zones, report=str(path))
    assert result['report'] == str(path) and os.path.exists(path), result
    return result


def test_report_shows_masters_zones_and_problems(first_build_servers, tmp_path):
    chromium = ensure_chromium()
    cluster = form_cluster(first_build_servers)
    by_address = {node.address: node for node in cluster}
    zones = {node.address: f'az{index % 3 + 1}' for index, node in enumerate(cluster)}

    with HeadlessChromium(chromium, timeout=30) as browser:
        healthy = report(cluster, zones, tmp_path / 'healthy.html')
        assert healthy['healthy'] is True and healthy['problems'] == [], healthy['problems']
        seen = look_at(browser, tmp_path / 'healthy.html', 'healthy')
        assert_readable(seen, healthy, zones)
        assert 'No problems found' in seen['text'] and 'coverage  16384 of 16384 slots owned' in seen['text']
        assert len(masters_of(healthy)) == 3 and seen['text'].count('\nreplica ') == 3

        # A slot left open half-way through a move: MIGRATING on its owner, IMPORTING on the target.
        source, target = masters_of(healthy)[:2]
        slot = int(source['slots'][0].split('-')[0])
        raw_command(by_address[source['address']], 'CLUSTER', 'SETSLOT', slot, 'MIGRATING', target['id'])
        raw_command(by_address[target['address']], 'CLUSTER', 'SETSLOT', slot, 'IMPORTING', source['id'])
        opened = report(cluster, zones, tmp_path / 'open-slot.html')
        seen = look_at(browser, tmp_path / 'open-slot.html', 'open-slot')
        assert_readable(seen, opened, zones)
        assert f"open_slot\t{source['address']}\tslot {slot} is migrating to {target['address']}" in seen['text']
        assert f"open_slot\t{target['address']}\tslot {slot} is importing from {source['address']}" in seen['text']
        for node in (source, target):
            raw_command(by_address[node['address']], 'CLUSTER', 'SETSLOT', slot, 'STABLE')

        # A master killed, its replica told not to take over: the others flag it fail and its slots go unserved.
        victim = masters_of(healthy)[2]
        replica = next(node for node in healthy['nodes'] if node['master_id'] == victim['id'])
        raw_command(by_address[replica['address']], 'CONFIG', 'SET', 'cluster-replica-no-failover', 'yes')
        by_address[victim['address']].kill()
        witness = by_address[source['address']]
        deadline = time.monotonic() + 30
        while not any(line.split()[0] == victim['id'] and 'fail' in line.split()[2].split(',')
                      for line in raw_command(witness, 'CLUSTER', 'NODES').splitlines()):
            assert time.monotonic() < deadline, f"{victim['address']} not flagged fail within 30 s"
            time.sleep(0.2)
        failed = report(cluster, zones, tmp_path / 'failed-master.html')
        assert failed['cluster_state'] == 'fail', failed['cluster_state']
        seen = look_at(browser, tmp_path / 'failed-master.html', 'failed-master')
        assert_readable(seen, failed, zones)
        line = next(text for text in seen['texts'] if text['text'].startswith(f"master {victim['address']} "))
        assert line['text'].endswith('[FAIL]') and {span['fill'] for span in line['spans'] if 'FAIL' in span['text']} == {FAILED_RED}, line
        assert f"node_failed\t{victim['address']}\t" in seen['text']
        # Its slots are owned but not served: the coverage row counts them and draws them in the uncovered slots' red.
        assert f"coverage  16384 of 16384 slots owned  {victim['slot_count']} by a failed master" in seen['text']
        legend = {entry['text']: entry['swatch'] for entry in seen['legend']}
        assert {rect['fill'] for rect in seen['unserved']} == {legend['uncovered slots']}, (seen['unserved'], legend)
        assert abs(sum(rect['box']['width'] for rect in seen['unserved']) - victim['slot_count'] / 16) < 1, seen['unserved']
        assert 'Cluster report: cluster_state fail' in seen['text']
