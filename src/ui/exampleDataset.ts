// A small dataset to try the app with at once: questions and answers about the demo model's text, as
// prompt/completion JSON lines, so that only the answers are trained (the data panel shows the prompts masked).

const PAIRS: [string, string][] = [
  ['Who created the heaven and the earth?', 'God created the heaven and the earth.'],
  ['What did God say on the first day?', 'Let there be light: and there was light.'],
  ['What was upon the face of the deep?', 'Darkness was upon the face of the deep.'],
  ['What did God call the light?', 'God called the light Day, and the darkness he called Night.'],
  ['Who was the first man?', 'The first man was Adam, made from the dust of the ground.'],
  ['Where did God put the man?', 'God put the man in the garden of Eden, to dress it and to keep it.'],
  ['Who built the ark?', 'Noah built the ark, as God commanded him.'],
  ['How long did the rain fall?', 'The rain was upon the earth forty days and forty nights.'],
  ['What sign did God set in the cloud?', 'God set his bow in the cloud, for a token of a covenant.'],
  ['Who led the people out of Egypt?', 'Moses led the children of Israel out of Egypt.'],
  ['Who is my shepherd?', 'The LORD is my shepherd; I shall not want.'],
  ['What is the beginning of wisdom?', 'The fear of the LORD is the beginning of wisdom.'],
];

export const EXAMPLE_DATASET = PAIRS.map(([question, answer]) => JSON.stringify({ prompt: `Question: ${question}\nAnswer:`, completion: ` ${answer}` })).join('\n');
