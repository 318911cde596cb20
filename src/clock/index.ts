export * from './dot.js'
export * from './hlc.js'
export * from './vector-clock.js'
export * from './token.js'
