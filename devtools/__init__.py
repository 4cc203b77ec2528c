"""Tooling that helps build the product but is not part of it: the Graph API simulator
(`graphsim`), the seeders (`seed`) and the dev server behind `make run` (`devserver`)."""
