"""`ComposeCommand`: compose command lines as data (nothing runs)."""

from pathlib import Path

from isletops.engines.compose_command import ComposeCommand

FILES = (Path("/i/docker-compose.yml"), Path("/i/docker-compose.production.yml"))
BASE = ["docker", "compose", "--project-name", "prod", "--file", str(FILES[0]), "--file", str(FILES[1])]


def command(version=(2, 24, 0)):
    return ComposeCommand(("docker", "compose"), "prod", FILES, version)


def test_every_command_starts_with_the_project_and_its_files():
    assert command().base() == BASE
    assert command().restart(["backend"]) == [*BASE, "restart", "backend"]
    assert command().down() == [*BASE, "down", "--remove-orphans"]
    assert command().down(remove_volumes=True)[-1] == "--volumes"


def test_up_waits_only_where_compose_can():
    assert command().up([], wait_timeout_s=90) == [*BASE, "up", "--detach", "--remove-orphans", "--wait",
                                                     "--wait-timeout", "90"]
    assert command((2, 10, 0)).up(["edge"], True, 90) == [*BASE, "up", "--detach", "--remove-orphans",
                                                          "--force-recreate", "--wait", "edge"]
    assert "--wait" not in command((1, 29, 2)).up([], wait_timeout_s=90)
    assert "--wait" not in command().up([])


def test_the_deploy_commands():
    assert command().replace(["shepherd", "pruner"], 60) == [*BASE, "up", "-d", "--no-deps", "--timeout", "60",
                                                             "shepherd", "pruner"]
    assert command().start_beside("backend", 2) == [*BASE, "up", "-d", "--no-deps", "--no-recreate", "--scale",
                                                    "backend=3", "backend"]
    assert command().logs(["backend"], tail=5, follow=True) == [*BASE, "logs", "--no-color", "--tail", "5",
                                                                "--follow", "backend"]
