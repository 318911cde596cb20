/** What the batch crash writer (test/fixtures/crash-batch-writer.ts) stores, so the parent can check it. */

/** The keys of the batch `marker`: `<marker>/k0` … `<marker>/k<count-1>`. */
export function batchKeys(marker: string, count: number): string[] {
  return Array.from({ length: count }, (_, j) => `${marker}/k${j}`)
}

/** The JSON value of key j of a batch; a large one is 40-60 KB, so one batch spans many log blocks. */
export function batchValue(marker: string, j: number, large: boolean): { marker: string; j: number; pad: string } {
  return { marker, j, pad: large ? 'x'.repeat(40_000 + ((j * 7919) % 20_000)) : '' }
}
