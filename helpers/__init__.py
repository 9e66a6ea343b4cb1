"""Helpers for the workbook 'Deep Learning Performance Optimization: From Theory to Practice'.

Read helpers/README.md first: it maps the folders (core, workload, support, then one folder per chapter).
Chapters import each name from the module that defines it, e.g.
`from helpers.core.measure import measure_interleaved`; this file imports nothing, so a torchrun job that
imports helpers.ch05_distributed.jobs.ddp loads only what that job needs.
"""
