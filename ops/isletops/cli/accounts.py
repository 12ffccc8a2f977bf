"""`isletops users add|list|disable|enable|reset-password` and `isletops tokens create|list|revoke`:
parse, call `isletops.accounts`, print. A new password or token is printed once, here only."""

from __future__ import annotations

import sys

import click

from isletops import accounts as core
from isletops.cli import Context, pass_context
from isletops.docker_engine import DockerEngine


def _password(from_stdin: bool) -> str | None:
    return sys.stdin.readline().rstrip("\n") if from_stdin else None


@click.group("users")
def users_group() -> None:
    """Accounts of the instance's web app and API (roles: technician, admin).

    \b
    Examples:
      isletops users add alice --role technician --team islet-lab
      isletops users add root-admin --role admin
      isletops users disable alice           sessions and tokens stop at once
      isletops users reset-password alice    prints a new password once
    """


@users_group.command("add")
@click.argument("username")
@click.option("--role", type=click.Choice(core.ROLES), default="technician", show_default=True)
@click.option("--team", default="default", show_default=True, help="Technicians see their team's jobs only.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of generating one.")
@pass_context
def add_command(ctx: Context, username: str, role: str, team: str, password_stdin: bool) -> None:
    """Add an account; prints its generated password once."""
    created = core.add_user(ctx.instance(), DockerEngine(), username, role, team, _password(password_stdin))
    click.echo(f"Added {created.details['username']} ({role}, team {created.details['team']}).")
    if not password_stdin:
        click.echo(f"Password (shown once): {created.secret}")


@users_group.command("list")
@pass_context
def list_command(ctx: Context) -> None:
    """Accounts, their role, team and state."""
    for user in core.manage(ctx.instance(), DockerEngine(), ["users", "list"]):
        state = "disabled" if user["disabled"] else "enabled"
        login = "password" if user["has_password"] else "no password"
        click.echo(f"{user['username']:<24} {user['role']:<11} {user['team']:<16} {state:<9} {login:<12} "
                   f"{user['tokens']} token(s)")


_STATE_CHANGES = {
    "disable": ("Disable an account: its sessions and API tokens stop working at once.",
                "Disabled {}; its sessions and tokens no longer work."),
    "enable": ("Enable a disabled account again.", "Enabled {}."),
}


def _state_command(action: str) -> click.Command:
    help_text, done = _STATE_CHANGES[action]

    @click.argument("username")
    @pass_context
    def command(ctx: Context, username: str) -> None:
        core.manage(ctx.instance(), DockerEngine(), ["users", action, username])
        click.echo(done.format(username))

    return users_group.command(action, help=help_text)(command)


for _action in _STATE_CHANGES:
    _state_command(_action)


@users_group.command("reset-password")
@click.argument("username")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin instead of generating one.")
@pass_context
def reset_command(ctx: Context, username: str, password_stdin: bool) -> None:
    """Set a new password (every session of the account ends); prints a generated one once."""
    created = core.reset_password(ctx.instance(), DockerEngine(), username, _password(password_stdin))
    click.echo(f"New password set for {username}; its sessions ended.")
    if not password_stdin:
        click.echo(f"Password (shown once): {created.secret}")


@click.group("tokens")
def tokens_group() -> None:
    """API tokens for automation: named, scoped, revocable, stored hashed, shown once.

    \b
    Examples:
      isletops tokens create alice lims-upload --scope jobs:submit --scope jobs:read
      isletops tokens list
      isletops tokens revoke alice lims-upload
    """


@tokens_group.command("create")
@click.argument("username")
@click.argument("name")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(core.SCOPES), required=True,
              help="What the token may do (repeat); never more than its account's role.")
@pass_context
def create_command(ctx: Context, username: str, name: str, scopes: tuple[str, ...]) -> None:
    """Create a token for USERNAME named NAME; prints it once."""
    created = core.create_token(ctx.instance(), DockerEngine(), username, name, list(scopes))
    click.echo(f"Token {name!r} of {username} ({', '.join(created.details['scopes'])}), shown once:")
    click.echo(created.secret)


@tokens_group.command("list")
@click.argument("username", required=False)
@pass_context
def tokens_list_command(ctx: Context, username: str | None) -> None:
    """Tokens (never their values): owner, name, scopes, last use, revocation."""
    for token in core.manage(ctx.instance(), DockerEngine(), ["tokens", "list", *([username] if username else [])]):
        state = f"revoked {token['revoked_at'][:19]}" if token["revoked_at"] else "live"
        used = (token["last_used_at"] or "never")[:19]
        click.echo(f"{token['username']:<20} {token['name']:<20} {','.join(token['scopes']):<32} "
                   f"last used {used:<19} {state}")


@tokens_group.command("revoke")
@click.argument("username")
@click.argument("name")
@pass_context
def revoke_command(ctx: Context, username: str, name: str) -> None:
    """Revoke a token at once."""
    core.manage(ctx.instance(), DockerEngine(), ["tokens", "revoke", username, name])
    click.echo(f"Revoked token {name!r} of {username}.")


def register(main: click.Group) -> None:
    main.add_command(users_group)
    main.add_command(tokens_group)
