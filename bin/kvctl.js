#!/usr/bin/env node
import '../dist/cli/kvctl.js'
