"""/admin's MCP servers: those of CHATBOT_MCP_SERVERS (read-only here) and those admins add."""

from __future__ import annotations

import reflex as rx

from chatbot_app.state.admin import AdminState


def _switch(server: rx.Var[dict[str, str]], setting: str, label: str) -> rx.Component:
    on = server[setting] == "true"
    return rx.cond(
        server["source"] == "admin",
        rx.button(
            rx.cond(on, f"{label}: on", f"{label}: off"),
            size="1",
            variant=rx.cond(on, "solid", "soft"),
            on_click=AdminState.change_mcp_server(server["name"], setting, ~on),
            custom_attrs={"data-testid": f"mcp-{setting}", "data-server": server["name"]},
        ),
        rx.text(rx.cond(on, f"{label}: on", f"{label}: off"), size="1"),
    )


def _row(server: rx.Var[dict[str, str]]) -> rx.Component:
    return rx.table.row(
        rx.table.cell(rx.code(server["name"])),
        rx.table.cell(rx.text(server["url"], size="1", class_name="mcp-url")),
        rx.table.cell(rx.text(server["source"], size="1")),
        rx.table.cell(
            rx.hstack(
                _switch(server, "enabled", "Enabled"),
                _switch(server, "trusted", "Trusted"),
                _switch(server, "default_on", "On for new chats"),
                rx.cond(
                    server["source"] == "admin",
                    rx.button(
                        "Remove",
                        size="1",
                        color_scheme="red",
                        variant="soft",
                        on_click=AdminState.remove_mcp_server(server["name"]),
                        custom_attrs={"data-testid": "mcp-remove", "data-server": server["name"]},
                    ),
                ),
                wrap="wrap",
                spacing="2",
            )
        ),
    )


def _add_form() -> rx.Component:
    return rx.form(
        rx.flex(
            rx.input(name="name", placeholder="name (a-z, 0-9, - and _)", aria_label="Server name", required=True),
            rx.input(
                name="url", placeholder="https://mcp.example.com/mcp", aria_label="Server URL", required=True, flex="1"
            ),
            rx.input(
                name="headers",
                placeholder='{"Authorization": "ENV_VARIABLE_NAME"}',
                aria_label="Headers: each value names an environment variable",
                flex="1",
            ),
            rx.el.label(
                rx.checkbox(name="trusted", aria_label="Trusted: its tools run without approval"),
                "Trusted",
                class_name="field-label",
            ),
            rx.el.label(
                rx.checkbox(name="default_on", aria_label="On for new chats"),
                "On for new chats",
                class_name="field-label",
            ),
            rx.button("Add server", type="submit", id="add-mcp-server-button"),
            gap="2",
            wrap="wrap",
            align="center",
            width="100%",
        ),
        on_submit=AdminState.add_mcp_server,
        reset_on_submit=True,
        width="100%",
    )


def tool_usage_section() -> rx.Component:
    """Tool calls per user and per tool, last 30 days."""
    return rx.vstack(
        rx.heading("Tool calls, last 30 days", as_="h2", size="4"),
        rx.cond(
            AdminState.tool_usage.length() > 0,  # type: ignore[attr-defined]
            rx.table.root(
                rx.table.header(
                    rx.table.row(
                        *[rx.table.column_header_cell(c) for c in ("User", "Tool", "Calls", "Failed or denied")]
                    )
                ),
                rx.table.body(
                    rx.foreach(
                        AdminState.tool_usage,
                        lambda row: rx.table.row(
                            rx.table.cell(row["who"]),
                            rx.table.cell(rx.code(row["tool"])),
                            rx.table.cell(row["calls"]),
                            rx.table.cell(row["failed"]),
                        ),
                    )
                ),
                size="1",
                width="100%",
                id="tool-usage-table",
            ),
            rx.text("No tool calls yet.", size="2", color_scheme="gray"),
        ),
        spacing="2",
        width="100%",
    )


def mcp_servers_section() -> rx.Component:
    return rx.vstack(
        rx.heading("MCP servers", as_="h2", size="4"),
        rx.text(
            "Their tools are offered to models that call tools, in the conversations that turn them on. A tool not "
            "marked read-only runs only after the user approves the call, unless its server is trusted. Header "
            "values name environment variables of the server: secrets never enter the database.",
            size="2",
            color_scheme="gray",
        ),
        _add_form(),
        rx.table.root(
            rx.table.header(
                rx.table.row(*[rx.table.column_header_cell(c) for c in ("Name", "URL", "From", "Settings")])
            ),
            rx.table.body(rx.foreach(AdminState.mcp_servers, _row)),
            size="1",
            width="100%",
            id="mcp-servers-table",
        ),
        spacing="2",
        width="100%",
    )
