// Timings the browser test reads (window.__eddy): not shown to users.
export const metrics: { firstAnswerMs?: number; lastLiveUpdate?: number; widgetUpdates: number } = { widgetUpdates: 0 };
(window as unknown as { __eddy: typeof metrics }).__eddy = metrics;
