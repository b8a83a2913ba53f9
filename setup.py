"""Map the top-level folders onto one import namespace.

``extensions/`` is ``fedhub.extensions`` and ``services/`` is ``fedhub.services``
(the layout users asked for); pyproject.toml's package finder cannot rename
folders, so the package list is computed here. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

DATA_EXTENSIONS = ("html", "mako", "json", "yaml", "css", "js", "ipynb", "j2")
PACKAGE_DIRS = {
    "fedhub": "fedhub",
    "fedhub.extensions": "extensions",
    "fedhub.services": "services",
}


def packages():
    found = []
    for name, folder in PACKAGE_DIRS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(where=folder)]
    return found


setup(
    packages=packages(),
    package_dir=PACKAGE_DIRS,
    # non-Python files inside the packages and one folder below (templates/, schemas/)
    package_data={"": [f"{d}*.{ext}" for d in ("", "*/") for ext in DATA_EXTENSIONS]},
    # enables the fedhub jupyter-server extension by default in every user server
    data_files=[
        (
            "etc/jupyter/jupyter_server_config.d",
            ["extensions/server/jupyter_server_config.d/fedhub.json"],
        )
    ],
)
