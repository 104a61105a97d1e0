export const packageName = '@rdl/bench';
