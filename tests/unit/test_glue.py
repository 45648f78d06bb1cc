"""What the loader modules share: messages in the caller's syntax, the per-call connection, plain
pillar data."""

import pytest

from salt_kvm import conn, glue
from salt_kvm.errors import InvalidInput, Refused


def test_exec_messages_name_options_as_keyword_arguments():
    assert (
        glue.cli_message("VM taps are attached: vnet0; stop the VMs or give force: True")
        == "VM taps are attached: vnet0; stop the VMs or give force=True"
    )
    assert (
        glue.cli_message("delete them first (or use children: True)")
        == "delete them first (or use children=True)"
    )
    assert (
        glue.cli_message("needs vlan_filtering: true on the bridge")
        == "needs vlan_filtering: true on the bridge"
    )

    def refuse():
        raise Refused(
            "purging would delete volumes in use: a (used by vm1); set force: True to delete "
            "them anyway"
        )

    with pytest.raises(glue.CommandExecutionError) as err:
        glue.call(refuse)
    assert "set force=True to delete them anyway" in str(err.value) and "force: True" not in str(
        err.value
    )


def test_a_bad_pillar_is_not_a_usage_error():
    def bad():
        raise InvalidInput(
            "kvm:pools:a:type",
            "'dri' is not one of dir",
            errors=[("kvm:pools:a:type", "'dri' is not one of dir"), ("kvm:x", "unknown key 'x'")],
        )

    with pytest.raises(glue.SaltInvocationError):
        glue.call(bad)
    with pytest.raises(glue.CommandExecutionError) as err:
        glue.check_pillar(bad)
    assert not isinstance(err.value, glue.SaltInvocationError)
    assert str(err.value).splitlines() == [
        "2 errors:",
        "kvm:pools:a:type: 'dri' is not one of dir",
        "kvm:x: unknown key 'x'",
    ]


def test_plain_copies_subclassed_containers():
    class Masked(dict):
        def __repr__(self):
            return "{'**********'}"

    class MaskedList(list):
        pass

    value = glue.plain(Masked(pools=Masked(a=Masked(type="dir", devices=MaskedList(["/dev/sdb"])))))
    assert value == {"pools": {"a": {"type": "dir", "devices": ["/dev/sdb"]}}}
    assert (
        type(value) is dict
        and type(value["pools"]["a"]) is dict
        and type(value["pools"]["a"]["devices"]) is list
    )
    assert "*" not in repr(value)


def test_a_connection_override_gets_its_own_session():
    context = {}
    config = {"kvm:connection:uri": "qemu:///system"}.get
    run = glue.session(context, config)
    other = glue.session(context, config, connection="test:///default")
    assert run.uri == "qemu:///system" and other.uri == "test:///default"
    assert (
        glue.session(context, config) is run
        and glue.session(context, config, connection="test:///default") is other
    )


@pytest.mark.parametrize("bad", ["nonsense", "", "://x", "qemu:///system extra", None, 5])
def test_a_bad_connection_names_the_argument(bad):
    with pytest.raises(InvalidInput) as err:
        conn.check_uri(bad)
    assert str(err.value).startswith("connection: ") and "is not a libvirt URI" in str(err.value)


@pytest.mark.parametrize(
    "good",
    [
        "qemu:///system",
        "qemu+ssh://root@hv2/system",
        "test:///default",
        "qemu:///system?socket=/run/x/libvirt-sock",
    ],
)
def test_libvirt_uris_pass(good):
    assert conn.check_uri(good) == good
