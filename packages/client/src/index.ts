export const packageName = '@rdl/client';
