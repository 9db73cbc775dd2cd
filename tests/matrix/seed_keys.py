"""Write COUNT keys into the cluster that HOST:PORT belongs to, with redis-py's cluster client; print COUNT.

The version matrix's smoke playbook (tests/matrix/smoke.yml) runs it with the redis-py under test, so that the slots
moved and the backup taken after it hold keys."""

import sys

from redis.cluster import RedisCluster


def main() -> int:
    host, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    client = RedisCluster(host=host, port=port, socket_timeout=10)
    for index in range(count):
        client.set(f'matrix:{index}', f'value-{index}')
    client.close()
    print(count)
    return 0


if __name__ == '__main__':
    sys.exit(main())
