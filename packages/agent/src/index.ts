export const packageName = '@rdl/agent';
