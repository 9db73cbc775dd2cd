"""site.yml on inventories/local, as `make demo` runs it: one deployment for the whole session.

test_site_local.py (the checks the guides make, idempotence, changes to the inventory) and test_site_local_ops.py (the
operations playbooks as operators run them) share it through the `local_site` fixture (conftest.py): one site.yml
and one teardown for both. Six instances on ports 7000-7005 of this machine, three zones, Debian's Redis 7.0.15,
daemons (this machine has no systemd). A demo already running there is taken down first and deployed again: it is
left running at the end.
"""

from __future__ import annotations

import os
from typing import Dict, Iterator, List, Optional

import yaml

from playbook import REPO, PlaybookRecap, run_playbook
from servers import port_serving

INVENTORY = 'inventories/local'
PORTS = list(range(7000, 7006))
BASE_INSTANCES: List[Dict] = yaml.safe_load(open(os.path.join(REPO, INVENTORY, 'group_vars', 'redis_cluster.yml')))['redis_server_instances']
ZONES = {instance['port']: instance['zone'] for instance in BASE_INSTANCES}
# The shard test_site_local.py's test_new_instances_join_as_shards adds (and removes).
ADDED = [{'port': 7006, 'zone': 'a'}, {'port': 7007, 'zone': 'b'}]


def teardown(instances: Optional[List[Dict]] = None) -> None:
    extra_vars = {'hashslot_teardown_confirm': 'yes'}
    if instances is not None:
        extra_vars['redis_server_instances'] = instances
    result = run_playbook('playbooks/teardown.yml', INVENTORY, extra_vars=extra_vars)
    assert result.returncode == 0, result.output[-3000:]


def deployment() -> Iterator[PlaybookRecap]:
    """Check mode first (it plans changes and starts nothing), then the real run; its recap is what the tests get."""
    demo_was_up = any(port_serving(port) for port in PORTS)
    # Files of an earlier deployment whose daemons are gone (the machine restarted, a run was killed) are a demo too:
    # its nodes files would bring back that cluster.
    leftover = any(os.path.exists(f'/etc/redis/redis-{port}.conf') for port in PORTS)
    if demo_was_up or leftover:
        teardown()
    if any(os.path.exists(f'/var/lib/redis/{instance["port"]}') for instance in ADDED):
        # The added shard, left by a run that did not get to remove it.
        teardown(ADDED)
    assert not any(port_serving(port) for port in PORTS), 'ports 7000-7005 are taken by something other than the demo'

    planned = run_playbook('site.yml', INVENTORY, check=True)
    assert planned.returncode == 0, planned.output[-3000:]
    assert planned.total('changed') > 0
    assert not any(port_serving(port) for port in PORTS), 'check mode started an instance'

    first = run_playbook('site.yml', INVENTORY)
    assert first.returncode == 0, first.output[-5000:]
    yield first
    if not demo_was_up:
        teardown()
        assert not any(port_serving(port) for port in PORTS)
        assert not os.path.exists('/var/lib/redis/7000') and not os.path.exists('/etc/redis/redis-7000.conf')
