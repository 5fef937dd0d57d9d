"""What a long job reports while it works; the CLI draws it (or not, off a terminal)."""


class Progress:
    """A silent progress sink; `kpictl.cli.progress` subclasses it with a rich bar."""

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass
