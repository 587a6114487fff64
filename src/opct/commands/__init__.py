"""The command groups of `opct`, one module each; `opct.cli` builds the parser from `ALL`."""

from opct.commands.data import add_data
from opct.commands.eval import add_eval
from opct.commands.serve import add_serve
from opct.commands.study import add_audit, add_demo
from opct.commands.train import add_train

ALL = [add_train, add_data, add_eval, add_demo, add_audit, add_serve]
