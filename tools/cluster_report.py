"""Print a cluster's CLUSTER INFO and its masters, replicas and zones, as `make demo` shows them.

    python tools/cluster_report.py [HOST:PORT] [--zones INVENTORY_VARS_YAML]

Zones come from the `redis_server_instances` list (port -> zone) of an inventory vars file; the password, if
any, from REDISCLI_AUTH.
"""

from __future__ import annotations

import argparse
import os
import sys

import redis
import yaml


def command(connection, *args):
    connection.send_command(*args)
    return connection.read_response()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('node', nargs='?', default='127.0.0.1:7000')
    parser.add_argument('--zones', help='inventory vars file with redis_server_instances')
    args = parser.parse_args()
    host, port = args.node.rsplit(':', 1)
    zones = {}
    if args.zones:
        with open(args.zones) as handle:
            for instance in (yaml.safe_load(handle) or {}).get('redis_server_instances', []):
                if 'zone' in instance:
                    zones[int(instance['port'])] = instance['zone']
    connection = redis.Connection(host=host, port=int(port), password=os.environ.get('REDISCLI_AUTH'), decode_responses=True)
    try:
        info = command(connection, 'CLUSTER', 'INFO')
        nodes = command(connection, 'CLUSTER', 'NODES')
    except redis.RedisError as exc:
        print(f'{args.node}: {exc}', file=sys.stderr)
        return 1
    finally:
        connection.disconnect()
    print(f'CLUSTER INFO from {args.node}')
    print(info.strip())
    members = {}
    for line in nodes.splitlines():
        fields = line.split()
        address = fields[1].split('@')[0]
        members[fields[0]] = dict(address=address, port=int(address.rsplit(':', 1)[1]), flags=fields[2].split(','),
                                  master=fields[3], slots=' '.join(fields[8:]))
    print()
    print(f'{"node":<22}{"role":<9}{"zone":<6}slots / master')
    for node_id, node in sorted(members.items(), key=lambda item: item[1]['port']):
        zone = zones.get(node['port'], '-')
        if 'master' in node['flags']:
            print(f'{node["address"]:<22}{"master":<9}{zone:<6}{node["slots"] or "(none)"}')
        else:
            master = members.get(node['master'], {}).get('address', node['master'])
            print(f'{node["address"]:<22}{"replica":<9}{zone:<6}of {master}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
