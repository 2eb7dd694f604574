"""What a maintainer runs on the device over SSH, and what deploys models to it.

``doctor`` (a pass/fail table), ``install`` (user, venv, config and unit),
``store`` (versioned models and atomic activation), ``ssh`` (argv and quoting for the
system ssh), ``deploy`` (workstation -> device), ``logs``, ``tone``, ``buttons`` and
``bench``.

May import the ground floor and every other room but ``cli``.
"""
