"""Map the top-level folders onto one import namespace.

``extensions/`` is ``fedhub.extensions`` and ``services/`` is ``fedhub.services``
(the layout users asked for); pyproject.toml's package finder cannot rename
folders, so the package list is computed here. Everything else is in pyproject.toml.

The data folders are mapped the same way, so a checkout keeps the folders users
see (``hub_config/tiers.yaml``, ``kernels/``, ``notebooks/``) while the wheel
carries them as package data: ``fedhub.hub_config``, ``fedhub.kernels`` and
``fedhub.notebooks``. Code finds them with ``importlib.resources.files(...)``,
one lookup that works in a checkout, an editable install and a wheel. Each
holds an ``__init__.py`` because setuptools' editable installs map regular
packages only.
"""

from setuptools import find_packages, setup

DATA_EXTENSIONS = ("html", "mako", "json", "yaml", "css", "js", "ipynb", "j2", "md")
PACKAGE_DIRS = {
    "fedhub": "fedhub",
    "fedhub.extensions": "extensions",
    "fedhub.services": "services",
}
DATA_PACKAGE_DIRS = {
    "fedhub.hub_config": "hub_config",  # tiers.yaml, the production-style jupyterhub_config.py
    "fedhub.kernels": "kernels",  # kernel specs copied into user servers per tier
    "fedhub.notebooks": "notebooks",  # tutorials/, dashboards/ (Voila), reports/ (papermill)
}


def packages():
    found = []
    for name, folder in PACKAGE_DIRS.items():
        found.append(name)
        found += [f"{name}.{sub}" for sub in find_packages(where=folder)]
    return found + list(DATA_PACKAGE_DIRS)


setup(
    packages=packages(),
    package_dir=PACKAGE_DIRS | DATA_PACKAGE_DIRS,
    # non-Python files inside the packages and one folder below (templates/, schemas/,
    # a kernel spec's folder, a notebook group)
    package_data={"": [f"{d}*.{ext}" for d in ("", "*/") for ext in DATA_EXTENSIONS]},
    # enables the fedhub jupyter-server extension by default in every user server
    data_files=[
        (
            "etc/jupyter/jupyter_server_config.d",
            ["extensions/server/jupyter_server_config.d/fedhub.json"],
        ),
        # JupyterLab launcher entries of the bundled dashboards (jupyter-app-launcher)
        (
            "share/jupyter/jupyter_app_launcher",
            ["extensions/server/launcher/jp_app_launcher_fedhub.yaml"],
        ),
    ],
)
