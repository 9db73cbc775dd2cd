# -*- coding: utf-8 -*-
# Copyright: hashslot.redis contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading cluster state from many nodes and waiting for them to agree."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ansible_collections.hashslot.redis.plugins.module_utils.redis_client import (
    NodeClient, NodeError, NodePool, parse_info, parse_version, pipelines_at_once, server_identity,
)
from ansible_collections.hashslot.redis.plugins.module_utils.topology import ClusterNode, ClusterView, format_ranges, member_ids

POLL_INTERVAL = 0.01


class ClusterError(Exception):
    """A refusal or failure worth showing the operator as it is (names node and reason).

    `changed` says whether anything had been written before it was raised; `waitable`, whether the cause may pass by
    itself within the node timeout (a master with a replica that is being taken over), so that a caller may wait and
    read the cluster again.
    """

    def __init__(self, message: str, changed: bool = False, waitable: bool = False):
        super().__init__(message)
        self.changed = changed
        self.waitable = waitable


@dataclass
class NodeState:
    """What one node says about itself and the cluster, read in one round trip."""
    address: str
    client: NodeClient
    node_id: str
    view: ClusterView
    cluster_state: str
    keys: int
    version: Tuple[int, int, int]
    server_name: str
    config: Dict[str, str] = field(default_factory=dict)
    # The server binary's path (INFO server), which a restart of the instance keeps.
    executable: str = ''

    @property
    def myself(self) -> ClusterNode:
        return self.view.myself

    @property
    def is_fresh(self) -> bool:
        """Knows only itself and owns no slot: never part of a cluster."""
        return len(self.view.members()) == 1 and not self.myself.slots and not self.myself.is_replica


_CONFIG_NAMES = ('cluster-announce-ip', 'cluster-port', 'cluster-announce-bus-port', 'cluster-announce-port')


def _node_commands(with_config: bool) -> List[Tuple]:
    commands: List[Tuple] = [('INFO', 'server'), ('INFO', 'cluster'), ('CLUSTER', 'NODES'), ('CLUSTER', 'INFO'), ('DBSIZE',)]
    if with_config:
        commands.extend(('CONFIG', 'GET', name) for name in _CONFIG_NAMES)
    return commands


def _node_state(client: NodeClient, replies: List) -> NodeState:
    """The NodeState that _node_commands' replies describe; NodeError when the node is unfit to read."""
    for reply in replies[:2]:
        if isinstance(reply, Exception):
            raise NodeError(client.address, f'INFO failed: {reply}')
    server = parse_info(replies[0])
    # Checked before the cluster replies: a node without cluster support refuses those.
    if parse_info(replies[1]).get('cluster_enabled') != '1':
        raise NodeError(client.address, 'cluster support is disabled; set "cluster-enabled yes" in its configuration and restart it')
    for reply in replies[2:5]:
        if isinstance(reply, Exception):
            raise NodeError(client.address, f'cluster query failed: {reply}')
    view = ClusterView.parse(client.address, replies[2])
    config: Dict[str, str] = {}
    for reply in replies[5:]:
        # CONFIG may be denied by an ACL; the defaults then apply.
        if isinstance(reply, list) and len(reply) >= 2:
            config[reply[0]] = reply[1]
    server_name, version_text = server_identity(server)
    return NodeState(
        address=client.address,
        client=client,
        node_id=view.myself.id,
        view=view,
        cluster_state=parse_info(replies[3]).get('cluster_state', ''),
        keys=int(replies[4]),
        version=parse_version(version_text),
        server_name=server_name,
        config=config,
        executable=server.get('executable', ''),
    )


def read_node(client: NodeClient, with_config: bool = False) -> NodeState:
    """INFO, CLUSTER NODES, CLUSTER INFO and DBSIZE of one node, in one round trip."""
    return _node_state(client, client.pipeline(_node_commands(with_config)))


def read_each(clients: Iterable[NodeClient], with_config: bool = False) -> Tuple[Dict[str, NodeState], Dict[str, NodeError]]:
    """read_node of every client, all in one round trip: the states, and the errors, by address, in the clients' order."""
    clients = list(clients)
    commands = _node_commands(with_config)
    states: Dict[str, NodeState] = {}
    errors: Dict[str, NodeError] = {}
    for client, outcome in zip(clients, pipelines_at_once([(client, commands) for client in clients])):
        try:
            if isinstance(outcome, NodeError):
                raise outcome
            states[client.address] = _node_state(client, outcome)
        except NodeError as exc:
            errors[client.address] = exc
    return states, errors


def read_views(clients: Iterable[NodeClient]) -> Dict[str, NodeState]:
    states, errors = read_each(clients)
    if errors:
        raise next(iter(errors.values()))
    return states


def cluster_states(clients: Sequence[NodeClient]) -> Dict[str, str]:
    """Each node's cluster_state (CLUSTER INFO alone, all in one round trip); a node that cannot answer raises."""
    states: Dict[str, str] = {}
    for client, outcome in zip(clients, pipelines_at_once([(client, [('CLUSTER', 'INFO')]) for client in clients])):
        if isinstance(outcome, NodeError):
            raise outcome
        if isinstance(outcome[0], Exception):
            raise NodeError(client.address, f'cluster query failed: {outcome[0]}')
        states[client.address] = parse_info(outcome[0]).get('cluster_state', '')
    return states


def wait_until(check: Callable[[], Optional[str]], timeout: float, what: str) -> None:
    """Poll `check` (None = done, else the reason it is not) every 10 ms until done or timeout."""
    deadline = time.monotonic() + timeout
    reason = None
    while True:
        try:
            reason = check()
        except NodeError as exc:
            reason = str(exc)
        if reason is None:
            return
        if time.monotonic() >= deadline:
            raise ClusterError(f'timed out after {timeout:g}s waiting for {what}: {reason}')
        time.sleep(POLL_INTERVAL)


def disagreement(states: Dict[str, NodeState], require_ok: bool = True) -> Optional[str]:
    """None when every node has the same slot map and replica relations (and cluster_state ok)."""
    reference_address = None
    reference = None
    for address, state in states.items():
        if require_ok and state.cluster_state != 'ok':
            return f'{address} reports cluster_state:{state.cluster_state}'
        # A node without an address (noaddr: an old id whose server came back with another) never completes a
        # handshake; only real handshakes are waited for.
        handshaking = [node.address for node in state.view.nodes.values() if 'handshake' in node.flags]
        if handshaking:
            return f'{address} is still in handshake with {", ".join(handshaking)}'
        fingerprint = state.view.fingerprint()
        if reference is None:
            reference_address, reference = address, fingerprint
        elif fingerprint != reference:
            return f'{address} and {reference_address} disagree on the slot map or on replica roles'
    return None


def wait_for_agreement(clients: Sequence[NodeClient], timeout: float, require_ok: bool = True,
                       extra: Optional[Callable[[Dict[str, NodeState]], Optional[str]]] = None) -> Dict[str, NodeState]:
    """Poll every node until they agree (and `extra` has no complaint); return the final states."""
    latest: Dict[str, Dict[str, NodeState]] = {}

    def check() -> Optional[str]:
        if require_ok:
            # While a node does not serve yet (a new master's rejoin delay) the full views would not agree anyway:
            # CLUSTER INFO alone is a fraction of reading and comparing every node's CLUSTER NODES.
            for address, state in cluster_states(clients).items():
                if state != 'ok':
                    return f'{address} reports cluster_state:{state}'
        states = read_views(clients)
        latest['states'] = states
        reason = disagreement(states, require_ok)
        if reason is None and extra is not None:
            reason = extra(states)
        return reason

    wait_until(check, timeout, 'the nodes to agree on the cluster configuration')
    return latest['states']


def wait_until_all_know(clients: Sequence[NodeClient], ids: Iterable[str], timeout: float, what: Optional[str] = None) -> None:
    """Wait until the node of every client knows every node id in `ids` as a member (handshake done).

    Cheap at a hundred nodes: one round trip to all the nodes a poll, only the first fields of CLUSTER NODES read, and
    a node that knows them all is not asked again (while nodes meet, none forgets another)."""
    wanted = set(ids)
    pending = list(clients)

    def check() -> Optional[str]:
        lacking = []
        for client, outcome in zip(pending, pipelines_at_once([(client, [('CLUSTER', 'NODES')]) for client in pending])):
            if isinstance(outcome, NodeError):
                raise outcome
            if isinstance(outcome[0], Exception):
                raise NodeError(client.address, f'cluster query failed: {outcome[0]}')
            known = len(wanted & member_ids(outcome[0]))
            if known < len(wanted):
                lacking.append((client, known))
        pending[:] = [client for client, dummy in lacking]
        if not lacking:
            return None
        client, known = lacking[0]
        others = f' (and {len(lacking) - 1} more nodes know not all)' if len(lacking) > 1 else ''
        return f'{client.address} knows {known} of {len(wanted)} nodes{others}'

    wait_until(check, timeout, what or f'every node to know all {len(wanted)} nodes')


def node_entry(node: ClusterNode, view: ClusterView, zone: Optional[str] = None) -> Dict:
    """A node as modules return it."""
    master = view.nodes.get(node.master_id) if node.master_id else None
    entry = dict(
        id=node.id,
        address=node.address,
        host=node.host,
        port=node.port,
        role=node.role,
        master_id=node.master_id,
        master_address=master.address if master else None,
        slots=format_ranges(node.slots),
        slot_count=node.slot_count,
        flags=[flag for flag in node.flags if flag not in ('myself',)],
        link_state=node.link_state,
        config_epoch=node.config_epoch,
    )
    if node.hostname:
        entry['hostname'] = node.hostname
    if zone:
        entry['zone'] = zone
    return entry


def describe_cluster(view: ClusterView, zones: Optional[Dict[str, str]] = None) -> List[Dict]:
    zones = zones or {}
    return [node_entry(node, view, zones.get(node.address) or zones.get(node.id))
            for node in sorted(view.members(), key=lambda item: (item.host, item.port))]


def layout_of_view(view: ClusterView, zones: Optional[Dict[str, str]] = None) -> List[Dict]:
    """Entries for render_layout from a live view."""
    zones = zones or {}
    entries = []
    for node in view.members():
        master = view.nodes.get(node.master_id) if node.master_id else None
        entries.append(dict(address=node.address, role=node.role, slots=node.slots,
                            master_address=master.address if master else None,
                            zone=zones.get(node.address) or zones.get(node.id)))
    return entries


def discover(pool: NodePool, seed_host: str, seed_port: int) -> Tuple[NodeState, Dict[str, NodeState], Dict[str, str]]:
    """Read the seed, then every member it knows; unreachable members are reported, not raised. A member that answers
    but is still in a transient state (LOADING, BUSY ...) when transient_timeout runs out is raised, naming it and its
    state: it is alive, even when the others flag it fail (a restarted replica loading a large data set may be), and
    an operation that went on without it would leave it out of what every member must see (a CLUSTER FORGET)."""
    seed_client = pool.get(seed_host, seed_port)
    seed = read_node(seed_client)
    states: Dict[str, NodeState] = {seed.address: seed}
    unreachable: Dict[str, str] = {}
    clients: Dict[str, NodeClient] = {}
    for node in seed.view.members():
        if node.is_myself or node.address in states or node.address in clients:
            continue
        try:
            clients[node.address] = pool.get(node.host, node.port)
        except NodeError as exc:
            if exc.state:
                raise
            unreachable[node.address] = exc.reason
    read, errors = read_each(clients.values())
    for address, exc in errors.items():
        if exc.state:
            raise exc
        unreachable[address] = exc.reason
    states.update(read)
    return seed, states, unreachable
