#!/usr/bin/env node
import '../dist/cli/meshkv.js'
