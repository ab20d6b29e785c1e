"""stream_app.state.store.cluster_address: the nodes to start from and the options of a cluster URL."""

from __future__ import annotations

import pytest

from stream_app.state.store import cluster_address


def test_one_node_with_tls_and_a_user() -> None:
    nodes, options = cluster_address("rediss://app:s3cret@10.0.0.5:7000/0?ssl_ca_certs=/etc/ca.pem")
    assert [(n.host, n.port) for n in nodes] == [("10.0.0.5", 7000)]
    assert options["username"] == "app"
    assert options["password"] == "s3cret"  # noqa: S105  # the URL's, read back
    assert options["ssl"] is True
    assert options["ssl_ca_certs"] == "/etc/ca.pem"
    assert "db" not in options
    assert "connection_class" not in options


def test_several_nodes_share_the_options() -> None:
    nodes, options = cluster_address("redis://u:p@a.example:6379,b.example:6380,[::1]:6381/0")
    assert [(n.host, n.port) for n in nodes] == [("a.example", 6379), ("b.example", 6380), ("::1", 6381)]
    assert "ssl" not in options
    assert options["username"] == "u"


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "redis://host/0", "redis://h:1,h2/0"])
def test_a_node_without_a_port_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"host:port|redis://"):
        cluster_address(url)
